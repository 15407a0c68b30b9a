#!/usr/bin/env python3
"""Concurrent streams against `mlc-wgpu serve` (issue 18: continuous batching).
Python stdlib only.

For each `--parallel` value the server is started on 127.0.0.1 (a free port)
with that many requests answered at once. One stream is timed alone, then
CLIENTS streaming chat requests are sent together (distinct prompts, greedy,
`ignore_eos`, TOKENS each). Printed per server: the time to first token of the
concurrent streams (p50, p90, max), their aggregate decode rate (all completion
tokens over the wall time of the burst), and that rate against the one stream
alone on the same server and against the first `--parallel` value's burst (the
baseline, run in the same invocation: by default 1, requests one at a time).

    python3 scripts/bench-serve.py --bin target/release/mlc-wgpu --model DIR \\
        --device cpu --clients 32 --tokens 64 --parallel 1,4,8
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time


def start_server(args, parallel):
    command = [args.bin, "serve", "--device", args.device, "--port", "0", "--model", args.model,
               "--parallel", str(parallel)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    if not line.startswith("listening on http://"):
        server.kill()
        sys.exit(f"unexpected first line from serve: {line!r}")
    host, port = line.split()[2][len("http://"):].split(":")
    return server, host, int(port)


def stream(host, port, index, tokens):
    """One streaming chat request: (sent, first content chunk, done, completion tokens)."""
    body = {
        "messages": [{"role": "user", "content": f"Request {index}: write about the number {index * 37 % 101}."}],
        "temperature": 0, "max_tokens": tokens, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True},
    }
    connection = http.client.HTTPConnection(host, port, timeout=3600)
    sent = time.monotonic()
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"status {response.status}: {response.read()[:300]!r}")
    first, completion = None, 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[len("data: "):])
        if first is None and any(c.get("delta", {}).get("content") for c in event.get("choices", [])):
            first = time.monotonic()
        if event.get("usage"):
            completion = event["usage"]["completion_tokens"]
    done = time.monotonic()
    connection.close()
    return sent, first or done, done, completion


def burst(host, port, clients, tokens):
    results = [None] * clients
    errors = []
    barrier = threading.Barrier(clients)

    def client(i):
        barrier.wait()
        try:
            results[i] = stream(host, port, i, tokens)
        except Exception as error:  # reported below
            errors.append(f"client {i}: {error}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        sys.exit("\n".join(errors))
    return results


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(args, parallel):
    server, host, port = start_server(args, parallel)
    try:
        stream(host, port, 10_000, 8)  # warm-up
        sent, first, done, completion = stream(host, port, 10_001, args.tokens)
        alone_tok_s = (completion - 1) / max(done - first, 1e-9)
        results = burst(host, port, args.clients, args.tokens)
    finally:
        server.kill()
        server.wait()
    start = min(r[0] for r in results)
    end = max(r[2] for r in results)
    ttft = [r[1] - r[0] for r in results]
    total = sum(r[3] for r in results)
    return {
        "parallel": parallel, "clients": args.clients, "tokens": args.tokens,
        "one_stream_tok_s": alone_tok_s,
        "ttft_p50_s": statistics.median(ttft), "ttft_p90_s": percentile(ttft, 0.9), "ttft_max_s": max(ttft),
        "aggregate_tok_s": total / (end - start), "wall_s": end - start, "completion_tokens": total,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release/mlc-wgpu")
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--parallel", default="1,4", help="comma-separated; the first is the baseline")
    parser.add_argument("--json", action="store_true", help="one JSON object per server")
    args = parser.parse_args()
    baseline = None
    for parallel in [int(p) for p in args.parallel.split(",")]:
        figures = measure(args, parallel)
        baseline = baseline or figures
        figures["vs_one_stream"] = figures["aggregate_tok_s"] / figures["one_stream_tok_s"]
        figures["vs_baseline"] = figures["aggregate_tok_s"] / baseline["aggregate_tok_s"]
        if args.json:
            print(json.dumps(figures), flush=True)
            continue
        print(
            f"--parallel {parallel}: {args.clients} streams of {args.tokens} tokens: "
            f"first token p50 {figures['ttft_p50_s']:.2f} s, p90 {figures['ttft_p90_s']:.2f} s, "
            f"max {figures['ttft_max_s']:.2f} s; {figures['aggregate_tok_s']:.1f} tok/s in all "
            f"= {figures['vs_one_stream']:.2f}× one stream alone ({figures['one_stream_tok_s']:.1f} tok/s), "
            f"{figures['vs_baseline']:.2f}× --parallel {baseline['parallel']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
