//! Greedy generation over token ids (sampling lives with the chat engine).

use crate::EngineError;
use crate::backend::StepInput;
use crate::model::{LanguageModel, STEPS_AHEAD};

/// When greedy generation stops.
#[derive(Debug, Clone, Default)]
pub struct GreedyOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Token ids that end generation; the stop token is included in the output.
    pub stop_token_ids: Vec<u32>,
}

/// Prefills `prompt` and then repeatedly appends the most likely token.
///
/// Pipelined: each step is queued on the device, fed by the token the
/// previous step chose there, [`STEPS_AHEAD`] steps before the host reads
/// that token, so the host records the next steps while the device runs the
/// earlier ones. The steps queued past a stop token are dropped again, leaving
/// the context as a step-by-step generation leaves it (the prompt and every
/// output token but the last).
pub async fn generate_greedy(
    model: &mut dyn LanguageModel,
    prompt: &[u32],
    options: &GreedyOptions,
) -> Result<Vec<u32>, EngineError> {
    let mut output = Vec::with_capacity(options.max_tokens);
    if options.max_tokens == 0 {
        return Ok(output);
    }
    model.queue_greedy(StepInput::Tokens(prompt))?;
    let mut queued = 1;
    loop {
        while queued <= STEPS_AHEAD && output.len() + queued < options.max_tokens {
            model.queue_greedy(StepInput::Queued)?;
            queued += 1;
        }
        queued -= 1;
        let token = match model.next_queued().await {
            Ok(drawn) => drawn.token,
            Err(error) => {
                model.drop_queued();
                return Err(error);
            }
        };
        output.push(token);
        if output.len() >= options.max_tokens || options.stop_token_ids.contains(&token) {
            model.drop_queued();
            return Ok(output);
        }
    }
}
