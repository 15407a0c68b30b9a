#!/usr/bin/env python3
"""Bounded load test of `mlc-wgpu serve` (issue 7, "Soak"). Python stdlib only.

Starts the server on 127.0.0.1 (a free port), runs CLIENTS threads that send
requests back to back for DURATION seconds, and reports requests served,
failures, latency percentiles and the server's resident memory at the start
(model loaded, no traffic yet), the middle and the end of the run.

The requests come from a fixed pool (chat and text completion, streamed and
not, greedy and seeded sampling), so every answer to the same request must be
the same text: a request whose answer differs from the first answer to it
counts as a failure, which catches state leaking between requests over time,
not only crashes. Usually run through scripts/soak.sh.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time


def pool(size):
    """The request pool: (path, body) pairs, each one deterministic."""
    requests = []
    for i in range(size):
        stream = i % 2 == 1
        body = {"max_tokens": 8 + i % 9, "stream": stream, "temperature": 0 if i % 4 < 2 else 0.7, "seed": 17 + i}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if i % 3 == 2:
            path = "/v1/completions"
            body["prompt"] = f"Soak prompt {i}: once upon a time"
        else:
            path = "/v1/chat/completions"
            body["messages"] = [{"role": "user", "content": f"Soak request {i}: say something."}]
        requests.append((path, body))
    return requests


def send(address, path, body, timeout):
    """One request; returns the generated text, or raises with what went wrong."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read().decode("utf-8")
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]}")
    key = "message" if path == "/v1/chat/completions" else None
    if not body["stream"]:
        choice = json.loads(data)["choices"][0]
        return choice[key]["content"] if key else choice["text"]
    events = [event[len("data: "):] for event in data.split("\n\n") if event.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        raise RuntimeError(f"stream without [DONE]: {data[-300:]}")
    text = ""
    for event in events[:-1]:
        chunk = json.loads(event)
        if "error" in chunk:
            raise RuntimeError(f"error event: {event[:300]}")
        for choice in chunk["choices"]:
            text += (choice["delta"].get("content") if key else choice.get("text")) or ""
    return text


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="the mlc-wgpu executable")
    parser.add_argument("--model", required=True, help="artifact folder (with tokenizer.json)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--pool", type=int, default=24, help="distinct requests (default 24)")
    parser.add_argument("--json", help="also write the figures to this file as JSON")
    args = parser.parse_args()

    server = subprocess.Popen(
        [args.binary, "serve", "--model", args.model, "--device", args.device, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on http://"):
            sys.exit(f"serve did not start: {line!r}")
        address = line.split()[2].removeprefix("http://")
        requests = pool(args.pool)
        first_answer = {}
        latencies, failures, lock = [], [], threading.Lock()
        rss = {"start": rss_kib(server.pid)}
        rss_samples = [rss["start"]]
        started = time.monotonic()
        deadline = started + args.duration

        def client(number):
            turn = number
            while time.monotonic() < deadline:
                index = turn % len(requests)
                turn += args.clients
                path, body = requests[index]
                sent = time.monotonic()
                try:
                    text = send(address, path, body, timeout=max(60.0, args.duration))
                except Exception as error:  # every failure is counted, none stops the run
                    with lock:
                        failures.append(f"request {index}: {error}")
                    continue
                elapsed = time.monotonic() - sent
                with lock:
                    latencies.append(elapsed)
                    expected = first_answer.setdefault(index, text)
                    if text != expected:
                        failures.append(f"request {index}: answer changed from {expected!r} to {text!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            time.sleep(1)
            if server.poll() is not None:
                failures.append(f"the server exited with {server.returncode}")
                break
            sample = rss_kib(server.pid)
            rss_samples.append(sample)
            if "middle" not in rss and time.monotonic() >= started + args.duration / 2:
                rss["middle"] = sample
        for thread in threads:
            thread.join()
        if server.poll() is None:
            rss["end"] = rss_kib(server.pid)
        wall = time.monotonic() - started
    finally:
        server.kill()
        server.wait()

    figures = {
        "duration_s": round(wall, 1),
        "clients": args.clients,
        "device": args.device,
        "requests_served": len(latencies),
        "failures": len(failures),
        "requests_per_s": round(len(latencies) / wall, 2),
        "latency_p50_s": round(percentile(latencies, 0.50), 3) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "latency_mean_s": round(statistics.mean(latencies), 3) if latencies else None,
        "rss_mib": {phase: round(kib / 1024, 1) for phase, kib in rss.items()},
        "rss_max_mib": round(max(rss_samples) / 1024, 1),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(figures, indent=2))
    for failure in failures[:20]:
        print("FAILED:", failure, file=sys.stderr)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({**figures, "failure_messages": failures[:100]}, out, indent=2)
    sys.exit(1 if failures or not latencies else 0)


if __name__ == "__main__":
    main()
