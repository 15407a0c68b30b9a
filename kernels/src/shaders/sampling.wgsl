// Token sampling on the GPU, in WebLLM's order (docs/sampling.md, "The chain"):
//   l = logits + bias;  penalties on generated tokens (count c > 0):
//       l ← l − (presence + c·frequency);  l ← l·rep if l < 0 else l / rep
//   x = l / T  (greedy, T ≤ 1e-5: x = l);   ids ≥ active_vocab, and ids the token mask
//   (structured output's grammar) does not allow, are excluded (p = 0)
//   p = exp(x − max x) / Σ exp(x − max x)   (greedy: p = 1/n on the n maxima)
//   sort p descending (equal p: ascending id), cum = inclusive prefix sums,
//   nucleus 0..=K, K = first index with cum[K] ≥ top_p;
//   token = sorted[j], j = first index with u < cum[j] / cum[K].
//
// Rows: one dispatch draws for several rows of logits at once (a batched step's, one row
// per sequence), the row in workgroup_id.y. Each row has its own settings (`Params`, a
// uniform array) and names the sequence whose penalty counts, logit bias, token mask and
// token slot it uses; its working values (work, scratch, histogram, candidates) are its
// own. An argmax row (`argmax_only`) ends after `reduce`, adds nothing to the counts and
// ignores the sequence's bias and mask.
//
// Passes (the vocabulary is cut into blocks of BLOCK = 1024 logits, one workgroup each):
//   process        (blocks)  work = x; per block: argmax of l (ties → lowest id), max of x
//   reduce         (1)       token = argmax (greedy decoding ends here); max of x;
//                            clears the histogram
//   exponentiate   (blocks)  work = e = exp(x − max) (greedy: 1 on the maxima, else 0);
//                            per block Σ e; histogram of e by its top 13 bits
//   choose_cutoff  (1)       Σ e; the lowest histogram bin such that the bins from the
//                            top down to it hold ≤ CAP tokens: the candidates
//   collect        (blocks)  candidates (e, id) with bin ≥ cutoff; per block Σ e of the rest
//   sample         (1)       bitonic sort of the ≤ CAP candidates, then WebLLM's scan;
//                            counts[token] += 1 (the penalties' counts, kept on the device)
//   select_top     (blocks)  only with top_logprobs = K > 0: per block, the K most
//                            probable ids, p = e / Σ e (equal p: lower id first)
//   merge_top      (1)       the K most probable of the blocks' lists, and p of the token
//
// The token buffer receives [token, p(token), id₀, p₀, …, id_{K−1}, p_{K−1}] (p as f32
// bits); without top_logprobs only the token is written.
//
// Top-p method: the bin of a probability is its f32 bit pattern >> 19 (exponent and
// 4 mantissa bits, 16 bins per octave), monotone in the value, so the candidates are
// exactly the most probable tokens, at most CAP = 1024 of them. Their prefix sums
// are taken in sorted order exactly as WebLLM does, so when the nucleus boundary
// and the draw fall among them (peaked distributions, the usual case) the result is
// WebLLM's. Otherwise the rest ("tail") is handled without sorting: the nucleus
// mass is taken as min(top_p, total) and a draw beyond the candidates picks the
// tail token whose running mass in id order passes the remaining goal — still
// distributed as p when top_p = 1, but not WebLLM's exact order.

struct Params {
    vocab: u32,
    active_vocab: u32,   // ids ≥ this are masked
    penalize: u32,       // 1: apply the penalties
    greedy: u32,         // 1: temperature ≤ 1e-5
    temperature: f32,    // max(T, 1e-6)
    top_p: f32,          // max(top_p, 1e-5)
    uniform: f32,        // the step's uniform random number in [0, 1)
    repetition: f32,
    presence: f32,
    frequency: f32,
    blocks: u32,         // ceil(vocab / BLOCK) ≤ MAX_BLOCKS
    masked: u32,         // 1: only ids whose bit is set in the token mask may be drawn
    top_logprobs: u32,   // K ≤ MAX_TOP: how many of the most probable ids to report
    sequence: u32,       // whose counts, bias, mask and token slot the row uses
    biased: u32,         // 1: add the sequence's logit bias
    argmax_only: u32,    // 1: the plain argmax of the raw logits, then stop
}

const WG: u32 = 256u;
const PER_THREAD: u32 = 4u;
const BLOCK: u32 = WG * PER_THREAD;
const MAX_BLOCKS: u32 = WG;            // vocab ≤ 262144
const BINS: u32 = 2048u;
const BINS_PER_THREAD: u32 = BINS / WG;
const CAP: u32 = 1024u;
const MAX_TOP: u32 = 20u;
const MAX_ROWS: u32 = 256u;
// Per row: CAP top-p candidates, then MAX_TOP per block for top_logprobs.
const PAIRS: u32 = CAP + MAX_BLOCKS * MAX_TOP;
// Per sequence: the token, its probability, MAX_TOP (id, probability) pairs.
const TOKEN_WORDS: u32 = 2u + 2u * MAX_TOP;

struct Scratch {
    block_best_value: array<f32, MAX_BLOCKS>,
    block_best_index: array<u32, MAX_BLOCKS>,
    block_max: array<f32, MAX_BLOCKS>,
    block_sum: array<f32, MAX_BLOCKS>,
    block_tail: array<f32, MAX_BLOCKS>,
    max: f32,
    sum: f32,
    cutoff: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> rows: array<Params, MAX_ROWS>;
// `vocab` logits per row.
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// Per sequence: the logit bias (vocab f32, as bits) followed by the token mask
// (ceil(vocab / 32) words, bit i % 32 of word i / 32 set = id i allowed). One buffer, so
// the shader stays within 8 storage buffers, WebGPU's default per-stage limit.
@group(0) @binding(2) var<storage, read> bias_and_mask: array<u32>;
@group(0) @binding(3) var<storage, read_write> counts: array<u32>;         // vocab per sequence
@group(0) @binding(4) var<storage, read_write> work: array<f32>;           // vocab per row
@group(0) @binding(5) var<storage, read_write> scratch: array<Scratch>;     // one per row
// Per row: BINS bins, then the candidate count.
@group(0) @binding(6) var<storage, read_write> hist: array<atomic<u32>>;
// PAIRS per row: the top-p candidates (bits of e, id), then each block's most probable
// ids for top_logprobs (bits of p, id).
@group(0) @binding(7) var<storage, read_write> candidates: array<vec2<u32>>;
// TOKEN_WORDS per sequence: the token, then its probability and the top_logprobs pairs.
@group(0) @binding(8) var<storage, read_write> token: array<u32>;

/// One row's settings and where its values start in each buffer.
struct Row {
    p: Params,
    index: u32,
    values: u32,      // logits and work
    counts: u32,
    bias: u32,        // bias, then the mask at bias + vocab
    hist: u32,
    candidates: u32,
    token: u32,
}

// `group` is the entry point's own workgroup_id parameter, not a member of
// `Invocation`: uniformity analysis (Tint's) takes a struct parameter as a
// whole, and `Invocation` holds per-invocation values, so a row read through
// it could not steer the barriers' control flow.
fn row_of(group: vec3<u32>) -> Row {
    let r = group.y;
    let p = rows[r];
    let mask_words = (p.vocab + 31u) / 32u;
    return Row(
        p,
        r,
        r * p.vocab,
        p.sequence * p.vocab,
        p.sequence * (p.vocab + mask_words),
        r * (BINS + 1u),
        r * PAIRS,
        p.sequence * TOKEN_WORDS,
    );
}

fn bin_of(e: f32) -> u32 {
    return bitcast<u32>(e) >> 19u;
}

/// Marks a block whose logits are not all finite (beats every real logit).
const POISONED: f32 = 0x1.fffffep+127f;

/// Neither NaN nor ±infinity, by the bits (compilers may fold `x != x` away).
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

/// Whether id `i` may be drawn: below the active vocabulary and, with a token mask, allowed by it.
fn drawable(row: Row, i: u32) -> bool {
    if i >= row.p.active_vocab {
        return false;
    }
    if row.p.masked == 0u {
        return true;
    }
    return (bias_and_mask[row.bias + row.p.vocab + (i >> 5u)] & (1u << (i & 31u))) != 0u;
}

fn processed_logit(row: Row, i: u32) -> f32 {
    var l = logits[row.values + i];
    if row.p.biased != 0u {
        l += bitcast<f32>(bias_and_mask[row.bias + i]);
    }
    if row.p.penalize != 0u {
        let c = counts[row.counts + i];
        if c > 0u {
            l = l - (row.p.presence + f32(c) * row.p.frequency);
            l = select(l / row.p.repetition, l * row.p.repetition, l < 0.0);
        }
    }
    return l;
}

@compute @workgroup_size(WG)
fn process(inv: Invocation, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    let b = group.x;
    var best = Best(LOWEST, NO_INDEX);
    var m = LOWEST;
    var bad = 0.0;
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = b * BLOCK + k * WG + inv.index;
        if i < row.p.vocab {
            let l = processed_logit(row, i);
            var x = l;
            if row.p.greedy == 0u {
                x = l / row.p.temperature;
            }
            work[row.values + i] = x;
            if drawable(row, i) {
                best = better(best, Best(l, i));
                m = max(m, x);
            }
            if !is_finite(logits[row.values + i]) {
                bad = 1.0;
            }
        }
    }
    best = block_best(best, inv);
    m = block_max(m, inv);
    if block_max(bad, inv) > 0.0 {
        best = Best(POISONED, NO_INDEX);
    }
    if inv.index == 0u {
        scratch[row.index].block_best_value[b] = best.value;
        scratch[row.index].block_best_index[b] = best.index;
        scratch[row.index].block_max[b] = m;
    }
}

@compute @workgroup_size(WG)
fn reduce(inv: Invocation, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    var best = Best(LOWEST, NO_INDEX);
    var m = LOWEST;
    var bad = 0.0;
    if inv.index < row.p.blocks {
        best = Best(
            scratch[row.index].block_best_value[inv.index],
            scratch[row.index].block_best_index[inv.index],
        );
        m = scratch[row.index].block_max[inv.index];
        bad = select(0.0, 1.0, best.index == NO_INDEX && best.value == POISONED);
    }
    best = block_best(best, inv);
    m = block_max(m, inv);
    let poisoned = block_max(bad, inv) > 0.0;
    if inv.index == 0u {
        // A NaN or infinite logit anywhere makes the result "no token": the
        // engine reports an error instead of sampling from garbage.
        token[row.token] = select(best.index, NO_INDEX, poisoned);
        scratch[row.index].max = m;
    }
    for (var j = inv.index; j <= BINS; j += WG) {
        atomicStore(&hist[row.hist + j], 0u);
    }
}

var<workgroup> block_hist: array<atomic<u32>, BINS>;

@compute @workgroup_size(WG)
fn exponentiate(inv: Invocation, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    if row.p.argmax_only != 0u {
        return;
    }
    let b = group.x;
    for (var j = inv.index; j < BINS; j += WG) {
        atomicStore(&block_hist[j], 0u);
    }
    workgroupBarrier();
    let m = scratch[row.index].max;
    var sum = 0.0;
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = b * BLOCK + k * WG + inv.index;
        if i < row.p.vocab {
            var e = 0.0;
            if drawable(row, i) {
                if row.p.greedy != 0u {
                    e = select(0.0, 1.0, work[row.values + i] == m);
                } else {
                    e = exp(work[row.values + i] - m);
                }
            }
            work[row.values + i] = e;
            sum += e;
            atomicAdd(&block_hist[bin_of(e)], 1u);
        }
    }
    sum = block_sum(sum, inv);  // its barrier also completes `block_hist`
    if inv.index == 0u {
        scratch[row.index].block_sum[b] = sum;
    }
    for (var j = inv.index; j < BINS; j += WG) {
        let n = atomicLoad(&block_hist[j]);
        if n > 0u {
            atomicAdd(&hist[row.hist + j], n);
        }
    }
}

var<workgroup> bin_group_count: array<u32, WG>;

@compute @workgroup_size(WG)
fn choose_cutoff(inv: Invocation, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    if row.p.argmax_only != 0u {
        return;
    }
    var sum = 0.0;
    if inv.index < row.p.blocks {
        sum = scratch[row.index].block_sum[inv.index];
    }
    sum = block_sum(sum, inv);
    var n = 0u;
    for (var j = 0u; j < BINS_PER_THREAD; j++) {
        n += atomicLoad(&hist[row.hist + inv.index * BINS_PER_THREAD + j]);
    }
    bin_group_count[inv.index] = n;
    workgroupBarrier();
    if inv.index == 0u {
        scratch[row.index].sum = sum;
        // Take whole groups of bins from the top while they fit, then single bins.
        var taken = 0u;
        var cutoff = 0u;
        for (var g = WG; g > 0u; g--) {
            if taken + bin_group_count[g - 1u] <= CAP {
                taken += bin_group_count[g - 1u];
                continue;
            }
            cutoff = g * BINS_PER_THREAD;
            for (var bin = g * BINS_PER_THREAD; bin > (g - 1u) * BINS_PER_THREAD; bin--) {
                let c = atomicLoad(&hist[row.hist + bin - 1u]);
                if taken + c > CAP {
                    break;
                }
                taken += c;
                cutoff = bin - 1u;
            }
            break;
        }
        scratch[row.index].cutoff = cutoff;
    }
}

@compute @workgroup_size(WG)
fn collect(inv: Invocation, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    if row.p.argmax_only != 0u {
        return;
    }
    let b = group.x;
    let cutoff = scratch[row.index].cutoff;
    var tail = 0.0;
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = b * BLOCK + k * WG + inv.index;
        if i < row.p.vocab {
            let e = work[row.values + i];
            if bin_of(e) >= cutoff {
                let slot = atomicAdd(&hist[row.hist + BINS], 1u);
                if slot < CAP {
                    candidates[row.candidates + slot] = vec2<u32>(bitcast<u32>(e), i);
                }
            } else {
                tail += e;
            }
        }
    }
    tail = block_sum(tail, inv);
    if inv.index == 0u {
        scratch[row.index].block_tail[b] = tail;
    }
}

var<workgroup> keys: array<u32, CAP>;    // bits of e (ordered like e, as e ≥ 0)
var<workgroup> ids: array<u32, CAP>;
var<workgroup> cum: array<f32, CAP>;
var<workgroup> choice: u32;
var<workgroup> sort_width: u32;
var<workgroup> tail_block: u32;
var<workgroup> tail_target: f32;
var<workgroup> tail_first: atomic<u32>;
var<workgroup> tail_last: atomic<u32>;

// Sorted order: larger probability first, then lower id.
fn goes_before(a: u32, b: u32) -> bool {
    return keys[a] > keys[b] || (keys[a] == keys[b] && ids[a] < ids[b]);
}

@compute @workgroup_size(WG)
fn sample(inv: Invocation, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    if row.p.argmax_only != 0u {
        return;
    }
    let lid = inv.index;
    let n = min(atomicLoad(&hist[row.hist + BINS]), CAP);
    for (var j = lid; j < CAP; j += WG) {
        if j < n {
            let c = candidates[row.candidates + j];
            keys[j] = c.x;
            ids[j] = c.y;
        } else {
            keys[j] = 0u;
            ids[j] = NO_INDEX;
        }
    }

    // Bitonic sort into `goes_before` order of the first `width` slots, the
    // candidates rounded up to a power of two: the padding slots sort last, so
    // the candidates' order is that of sorting all CAP slots, in log2(width)
    // rounds instead of log2(CAP) (a greedy step has one candidate or a few).
    if lid == 0u {
        sort_width = max(2u, 1u << firstLeadingBit(max(n, 1u) * 2u - 1u));
    }
    let width = workgroupUniformLoad(&sort_width);
    for (var size = 2u; size <= width; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            workgroupBarrier();
            for (var j = lid; j < width; j += WG) {
                let partner = j ^ stride;
                if partner > j && goes_before(j, partner) != ((j & size) == 0u) {
                    let key = keys[j];
                    let id = ids[j];
                    keys[j] = keys[partner];
                    ids[j] = ids[partner];
                    keys[partner] = key;
                    ids[partner] = id;
                }
            }
        }
    }
    workgroupBarrier();

    // WebLLM's scan over the sorted candidates, serially (same f32 sums as the reference).
    if lid == 0u {
        let s = scratch[row.index].sum;
        var total = 0.0;
        var last = NO_INDEX;  // K when it is among the candidates
        for (var j = 0u; j < n; j++) {
            total += bitcast<f32>(keys[j]) / s;
            cum[j] = total;
            if total >= row.p.top_p {
                last = j;
                break;
            }
        }
        var renorm: f32;
        var scanned = n;
        if last != NO_INDEX {
            renorm = cum[last];
            scanned = last + 1u;
        } else {
            var tail = 0.0;
            for (var b = 0u; b < row.p.blocks; b++) {
                tail += scratch[row.index].block_tail[b];
            }
            renorm = min(row.p.top_p, total + tail / s);
        }
        var chosen = NO_INDEX;
        for (var j = 0u; j < scanned; j++) {
            if row.p.uniform < cum[j] / renorm {
                chosen = ids[j];
                break;
            }
        }
        if chosen == NO_INDEX && last != NO_INDEX {
            chosen = ids[last];  // u ≥ 1
        }
        if chosen == NO_INDEX {
            // The draw lies in the tail: find its block by the tail masses in id order.
            var goal = (row.p.uniform * renorm - total) * s;
            var b = 0u;
            for (; b + 1u < row.p.blocks; b++) {
                if goal < scratch[row.index].block_tail[b] {
                    break;
                }
                goal -= scratch[row.index].block_tail[b];
            }
            tail_block = b;
            tail_target = goal;
        }
        choice = chosen;
        atomicStore(&tail_first, NO_INDEX);
        atomicStore(&tail_last, 0u);
    }
    var chosen = workgroupUniformLoad(&choice);

    if chosen == NO_INDEX {
        // Running tail mass over the block in id order: each thread owns PER_THREAD
        // consecutive ids; the thread totals get an inclusive scan in `cum`.
        let b = tail_block;
        let goal = tail_target;
        let cutoff = scratch[row.index].cutoff;
        var running: array<f32, PER_THREAD>;
        var mass: array<f32, PER_THREAD>;
        var own = 0.0;
        for (var k = 0u; k < PER_THREAD; k++) {
            let i = b * BLOCK + lid * PER_THREAD + k;
            var e = 0.0;
            if i < row.p.vocab && bin_of(work[row.values + i]) < cutoff {
                e = work[row.values + i];
            }
            own += e;
            mass[k] = e;
            running[k] = own;
        }
        cum[lid] = own;
        workgroupBarrier();
        for (var offset = 1u; offset < WG; offset <<= 1u) {
            var add = 0.0;
            if lid >= offset {
                add = cum[lid - offset];
            }
            workgroupBarrier();
            cum[lid] += add;
            workgroupBarrier();
        }
        let before = cum[lid] - own;
        for (var k = 0u; k < PER_THREAD; k++) {
            let i = b * BLOCK + lid * PER_THREAD + k;
            if mass[k] > 0.0 {
                atomicMax(&tail_last, i + 1u);  // id + 1: 0 means none
                if before + running[k] > goal {
                    atomicMin(&tail_first, i);
                }
            }
        }
        workgroupBarrier();
        if lid == 0u {
            var pick = atomicLoad(&tail_first);
            let last_positive = atomicLoad(&tail_last);
            if pick == NO_INDEX && last_positive != 0u {
                pick = last_positive - 1u;  // rounding left the goal past the block's mass
            }
            if pick == NO_INDEX {
                pick = token[row.token];  // no tail mass at all: the argmax
            }
            choice = pick;
        }
        chosen = workgroupUniformLoad(&choice);
    }
    if lid == 0u && token[row.token] != NO_INDEX {
        token[row.token] = chosen;  // NO_INDEX (non-finite logits, set by `reduce`) stays
        // The next step's penalties count it, whether or not the host has read it yet.
        if chosen < row.p.vocab {
            counts[row.counts + chosen] += 1u;
        }
    }
}

/// p = e / Σ e of id `i` (after `exponentiate`; 0 when nothing is drawable).
fn probability(row: Row, i: u32) -> f32 {
    let s = scratch[row.index].sum;
    if s > 0.0 {
        return work[row.values + i] / s;
    }
    return 0.0;
}

@compute @workgroup_size(WG)
fn select_top(inv: Invocation, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    let b = group.x;
    var taken = 0u;  // bit k: this thread's k-th id is already listed
    for (var r = 0u; r < row.p.top_logprobs; r++) {
        var best = Best(LOWEST, NO_INDEX);
        for (var k = 0u; k < PER_THREAD; k++) {
            let i = b * BLOCK + k * WG + inv.index;
            if i < row.p.vocab && (taken & (1u << k)) == 0u {
                best = better(best, Best(probability(row, i), i));
            }
        }
        let winner = block_best(best, inv);
        if winner.index != NO_INDEX && winner.index % WG == inv.index {
            taken |= 1u << ((winner.index - b * BLOCK) / WG);
        }
        if inv.index == 0u {
            candidates[row.candidates + CAP + b * MAX_TOP + r] =
                vec2<u32>(bitcast<u32>(winner.value), winner.index);
        }
    }
}

/// Entries of the blocks' lists one thread of `merge_top` owns (⌈MAX_BLOCKS · MAX_TOP / WG⌉).
const MERGE_PER_THREAD: u32 = (MAX_BLOCKS * MAX_TOP + WG - 1u) / WG;

@compute @workgroup_size(WG)
fn merge_top(inv: Invocation, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    if row.p.top_logprobs == 0u {
        return;
    }
    let listed = row.p.blocks * MAX_TOP;
    let lists = row.candidates + CAP;
    var taken = 0u;  // bit t: entry inv.index + t·WG is already reported
    for (var r = 0u; r < row.p.top_logprobs; r++) {
        var best = Best(LOWEST, NO_INDEX);
        for (var t = 0u; t < MERGE_PER_THREAD; t++) {
            let j = inv.index + t * WG;
            if j < listed && (j % MAX_TOP) < row.p.top_logprobs && (taken & (1u << t)) == 0u {
                let entry = candidates[lists + j];
                best = better(best, Best(bitcast<f32>(entry.x), entry.y));
            }
        }
        let winner = block_best(best, inv);
        for (var t = 0u; t < MERGE_PER_THREAD; t++) {
            let j = inv.index + t * WG;
            if j < listed && winner.index != NO_INDEX && candidates[lists + j].y == winner.index {
                taken |= 1u << t;
            }
        }
        if inv.index == 0u {
            token[row.token + 2u + 2u * r] = winner.index;
            token[row.token + 3u + 2u * r] = bitcast<u32>(winner.value);
        }
    }
    if inv.index == 0u && token[row.token] < row.p.vocab {
        token[row.token + 1u] = bitcast<u32>(probability(row, token[row.token]));
    }
}
