//! `mlc-wgpu chat` fed through a pipe: commands stay out of the conversation,
//! a `"""` block is one message, and each reply is followed by its speed line.

#[path = "common/artifacts.rs"]
mod artifacts;

use std::io::Write;
use std::process::{Command, Stdio};

use artifacts::tiny_qwen2_with_tokenizer;
use mlc_conformance::{
    CAPITAL_ANSWER as ANSWER, CAPITAL_QUESTION as QUESTION, SMOLLM2 as MODEL, shared_path,
    smollm2_chat_reference,
};

/// Runs `chat` on the tiny model with `input` on stdin; (success, stderr).
fn chat(input: &str) -> (bool, String) {
    let model = tiny_qwen2_with_tokenizer();
    let args = ["chat", "--device", "cpu", "--greedy", "--max-tokens", "3", "--model"];
    let model_arg = [model.path().to_str().unwrap()];
    let (ok, _, stderr) = run_with_stdin(&[&args[..], &model_arg].concat(), input);
    (ok, stderr)
}

/// The prompt token counts of the replies, from their speed lines.
fn prompt_tokens(stderr: &str) -> Vec<usize> {
    stderr
        .lines()
        .filter_map(|line| line.split("; prompt ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn commands_blocks_and_speed_lines() {
    let input = "/help\n/stats\n\"\"\"first line\nsecond line\nthird line\"\"\"\n/stats\n/bogus\n/set system Be brief.\nHi\n/exit\nnever read\n";
    let (ok, stderr) = chat(input);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("/set system TEXT"), "/help prints the commands: {stderr}");
    assert!(stderr.contains("(no reply yet)"), "{stderr}");
    assert!(stderr.contains("unknown command /bogus"), "{stderr}");
    assert!(stderr.contains("(system prompt set; new conversation)"), "{stderr}");
    assert!(stderr.contains("finish_reason: \"length\"; usage: {"), "/stats: {stderr}");
    // Two messages were sent (the block is one), so two speed lines; the
    // commands and the line after /exit went nowhere.
    let counts = prompt_tokens(&stderr);
    assert_eq!(counts.len(), 2, "{stderr}");

    // The block is one message of three lines: as many prompt tokens as the
    // same message sent alone with its newlines.
    let (ok, alone) = chat("\"\"\"\nfirst line\nsecond line\nthird line\n\"\"\"\n");
    assert!(ok, "{alone}");
    assert_eq!(prompt_tokens(&alone), [counts[0]], "{alone}");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("(3 tokens at ") && line.contains(" tok/s; prompt ")),
        "{stderr}"
    );
}

/// Drives `chat` in a pseudo-terminal (python's `pty`), as a person types:
/// exits 0 when every key did what it should, else prints what went wrong.
const PTY_SCRIPT: &str = r#"
import os, pty, select, signal, sys, time
binary, model = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "chat", "--device", "cpu", "--greedy", "--model", model])
seen = b""
def wait_for(text, timeout=60):
    global seen
    end = time.time() + timeout
    while time.time() < end:
        if text in seen:
            found = seen.index(text) + len(text)
            seen = seen[found:]
            return
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    sys.exit("never saw %r; got %r" % (text, seen[-2000:]))
def send(keys):
    os.write(fd, keys)
wait_for(b"> ")
# Ctrl-C during a reply stops it and keeps the session.
send(b"Hello\r")
time.sleep(1.0)
send(b"\x03")
wait_for(b'(finish_reason: "abort")')
wait_for(b"> ")
# Line editing: "/hepl", Left, Backspace (drops the p), End, "p" gives "/help".
send(b"/hepl")
send(b"\x1b[D")
send(b"\x7f")
send(b"\x1b[F")
send(b"p\r")
wait_for(b"/set system TEXT")
wait_for(b"> ")
# History: Up recalls "/help".
send(b"\x1b[A\r")
wait_for(b"/set system TEXT")
wait_for(b"> ")
# Ctrl-C at an empty prompt warns; typing something forgets it.
send(b"\x03")
wait_for(b"Ctrl-C again")
send(b"/help\r")
wait_for(b"/set system TEXT")
wait_for(b"> ")
# Between prompts the terminal is not raw and Ctrl-C arrives as SIGINT: it
# counts as the same key, so this warns afresh and a second Ctrl-C quits.
os.kill(pid, signal.SIGINT)
wait_for(b"Ctrl-C again")
send(b"\x03")
end = time.time() + 30
while time.time() < end:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    sys.exit("chat did not quit after a second Ctrl-C")
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("chat exited with %r" % status)
"#;

#[test]
fn at_a_terminal_keys_edit_recall_and_ctrl_c_stops_a_reply_not_the_chat() {
    let model = tiny_qwen2_with_tokenizer();
    let output = Command::new("python3")
        .args(["-c", PTY_SCRIPT, env!("CARGO_BIN_EXE_mlc-wgpu")])
        .arg(model.path())
        .output()
        .expect("python3 runs the pty driver");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// The real SmolLM2 artifact through the command line (needs `../shared`).

/// Runs `mlc-wgpu` with `stdin` piped in; returns (success, stdout, stderr).
fn run_with_stdin(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlc-wgpu"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mlc-wgpu");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

#[test]
fn render_prompt_prints_webllm_s_prompt_and_ids() {
    let Some(model) = shared_path(MODEL) else { return };
    let reference = smollm2_chat_reference().unwrap();
    let messages = serde_json::json!([{"role": "user", "content": QUESTION}]).to_string();
    let (ok, stdout, stderr) = run_with_stdin(
        &["render-prompt", "--model", model.to_str().unwrap(), "--messages", "-"],
        &messages,
    );
    assert!(ok, "{stderr}");
    let (prompt, ids) = stdout.trim_end().rsplit_once('\n').unwrap();
    assert_eq!(
        prompt,
        format!(
            "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant",
            reference.system
        )
    );
    assert_eq!(serde_json::from_str::<Vec<u32>>(ids).unwrap(), reference.prompt_ids);
}

#[test]
fn the_chat_command_keeps_the_conversation_until_exit() {
    let Some(model) = shared_path(MODEL) else { return };
    let args = [
        "chat",
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "--greedy",
        "--max-tokens",
        "12",
        "--stats",
    ];
    let input = format!("{QUESTION}\nAnd of Germany?\n/exit\nThis line is never read.\n");
    let (ok, stdout, stderr) = run_with_stdin(&args, &input);
    assert!(ok, "{stderr}");
    let replies: Vec<&str> = stdout.lines().collect();
    assert_eq!(replies.len(), 2, "{stdout}");
    assert_eq!(replies[0], ANSWER);
    // The second line continues on the KV cache: only its round is prefilled.
    let prompt_tokens: Vec<&str> = stderr
        .split("\"prompt_tokens\":")
        .skip(1)
        .map(|rest| rest.split(',').next().unwrap())
        .collect();
    assert_eq!(prompt_tokens, ["37", "13"], "{stderr}");
}
