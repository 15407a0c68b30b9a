#!/usr/bin/env python3
"""The fast CPU engine side by side with llama.cpp on the same weights, interleaved rounds.

    python3 scripts/bench-cpu-llama.py --model ARTIFACT_DIR --gguf FILE.gguf [--threads 1,2] [--rounds 3]
        [--baseline OTHER_MLC_WGPU_BINARY]

`mlc-wgpu bench --device cpu` on the MLC artifact and llama.cpp (node-llama-cpp's prebuilt CPU
build, `scripts/bench-llama-cpp.mjs`) on the GGUF run one after the other at each thread count, in
`--rounds` rounds, so that both see the same machine (with `--baseline`, a second mlc-wgpu build
too, e.g. main's, and the ratio of the two). Each run prints one JSON line (with the 1-minute load average after its round); the end is a
table of medians (range in brackets) and the ratios mlc-wgpu / llama.cpp. For the same weights,
write the GGUF from the artifact with `scripts/mlc-to-gguf.py` (docs/performance.md, "The CPU
engines"). node-llama-cpp is installed with npm into `<cache>/tools/node-llama-cpp` on first use
(`--node-llama-cpp DIR` names another folder that has it).
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
NODE_LLAMA_CPP = "node-llama-cpp@3.21.1"


def cache_dir():
    if os.environ.get("MLC_WGPU_CACHE"):
        return pathlib.Path(os.environ["MLC_WGPU_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "mlc-wgpu"


def llama_cpp_folder(folder):
    """A folder whose node_modules has node-llama-cpp, with the bench script beside it."""
    folder = pathlib.Path(folder) if folder else cache_dir() / "tools" / "node-llama-cpp"
    if not (folder / "node_modules" / "node-llama-cpp").exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"bench-cpu-llama: npm install {NODE_LLAMA_CPP} into {folder}", file=sys.stderr)
        subprocess.run(["npm", "install", "--prefix", str(folder), "--no-save", NODE_LLAMA_CPP], check=True)
    # An ES module resolves its imports from its own folder.
    shutil.copy(ROOT / "scripts" / "bench-llama-cpp.mjs", folder / "bench-llama-cpp.mjs")
    return folder


def run_json(command, env=None):
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench-cpu-llama: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values):
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="MLC artifact folder")
    parser.add_argument("--gguf", required=True, help="the same weights as a GGUF (scripts/mlc-to-gguf.py)")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--mlc-wgpu", default=str(ROOT / "target" / "release" / "mlc-wgpu"))
    parser.add_argument("--baseline", help="another mlc-wgpu build, run in the same rounds (e.g. main's)")
    parser.add_argument("--node-llama-cpp", help="folder with node_modules/node-llama-cpp")
    args = parser.parse_args()

    folder = llama_cpp_folder(args.node_llama_cpp)
    thread_counts = sorted({int(t) for t in args.threads.split(",")})
    builds = {"mlc-wgpu": args.mlc_wgpu}
    if args.baseline:
        builds["baseline"] = args.baseline
    engines = (*builds, "llama.cpp")
    runs = {(engine, t): [] for engine in engines for t in thread_counts}
    loads = []
    for round_index in range(args.rounds):
        for threads in thread_counts:
            measured = []
            for engine, binary in builds.items():
                measured.append((engine, run_json(
                    [binary, "bench", "--model", args.model, "--offline", "--device", "cpu",
                     "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens),
                     "--contexts", "128", "--context-steps", "16", "--json"],
                    env={**os.environ, "RAYON_NUM_THREADS": str(threads)},
                )))
            measured.append(("llama.cpp", run_json(
                ["node", str(folder / "bench-llama-cpp.mjs"), args.gguf, str(threads),
                 str(args.prompt_tokens), str(args.gen_tokens)],
            )))
            # The 1-minute load average after the runs (the machine may be shared).
            load = round(os.getloadavg()[0], 2)
            loads.append(load)
            for engine, figures in measured:
                runs[(engine, threads)].append(figures)
                line = {k: figures.get(k) for k in ("ttft_s", "decode_tok_s", "decode_sampled_tok_s", "gen_tokens")}
                print(json.dumps({"round": round_index, "engine": engine, "threads": threads, **line,
                                  "load_1min": load}), flush=True)

    print(f"\nmedian (range) of {args.rounds} rounds; {args.prompt_tokens}-token prompt, {args.gen_tokens} tokens; "
          f"1-minute load average {min(loads)}–{max(loads)}")
    print("| threads | engine | time to first token (ms) | decode, greedy (tok/s) | decode, model's sampling (tok/s) |")
    print("|---|---|---|---|---|")
    for threads in thread_counts:
        for engine in engines:
            figures = runs[(engine, threads)]
            ttft = spread([f["ttft_s"] * 1000 for f in figures])
            decode = spread([f["decode_tok_s"] for f in figures])
            sampled = spread([f["decode_sampled_tok_s"] for f in figures]) if engine in builds else "—"
            print(f"| {threads} | {engine} | {ttft} | {decode} | {sampled} |")
    for threads in thread_counts:
        median = lambda engine, key: statistics.median(f[key] for f in runs[(engine, threads)])
        decode = median("mlc-wgpu", "decode_tok_s") / median("llama.cpp", "decode_tok_s")
        ttft = median("mlc-wgpu", "ttft_s") / median("llama.cpp", "ttft_s")
        print(f"{threads} thread(s): mlc-wgpu / llama.cpp decode {decode:.2f}×, time to first token {ttft:.2f}×")
        if args.baseline:
            decode = median("mlc-wgpu", "decode_tok_s") / median("baseline", "decode_tok_s")
            ttft = median("mlc-wgpu", "ttft_s") / median("baseline", "ttft_s")
            print(f"{threads} thread(s): mlc-wgpu / baseline decode {decode:.2f}×, time to first token {ttft:.2f}×")


if __name__ == "__main__":
    main()
