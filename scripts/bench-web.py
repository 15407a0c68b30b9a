#!/usr/bin/env python3
"""The browser benchmark's driver (scripts/bench-web.sh calls it): serves the bench page, the
WebLLM-compatible module (web/js, web/pkg) and one artifact folder on 127.0.0.1, runs headless
Chromium on the page with a fresh profile (so the first load downloads and the second reads the
Cache API), waits for the page to post its report, and prints it like `mlc-wgpu bench`.

With `--wllama GGUF` it then runs wllama (llama.cpp compiled to wasm; web/bench/package.json pins it,
installed with `npm ci` into web/bench/node_modules on first use) on that GGUF in a second browser,
CPU only, with the same chat prompt, lengths and greedy settings, at `--threads` threads, and prints
both engines' figures and their ratio. wllama's threads need a cross-origin isolated page, so its
page is served with the COOP/COEP headers; the mlc-wgpu page is served as a site serves it, without.

With `--device cpu --threads N[,M...]` the mlc-wgpu CPU engine runs at those thread counts too, in
turn: in a Web Worker of a page served with COOP/COEP (`engineConfig.cpuThreads`; more than one
thread loads the threaded module, web/pkg-threads), each count beside wllama at the same count.

Python's standard library only, so it also runs where there is no Node (the lent GPU machine).
"""

import argparse
import http.server
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = {".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".html": "text/html; charset=utf-8", ".txt": "text/plain"}
# As the browser tests start Chromium: no background connections (this network is closed).
BASE_FLAGS = ["--headless=new", "--no-sandbox", "--no-first-run", "--no-default-browser-check",
              "--disable-quic", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-dev-shm-usage", "--enable-unsafe-webgpu"]


def handler(mounts, results, isolated):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = urllib.parse.unquote(self.path.split("?", 1)[0])
            for prefix, folder in mounts:
                if not path.startswith(prefix):
                    continue
                file = os.path.realpath(os.path.join(folder, path[len(prefix):]))
                if file.startswith(os.path.realpath(folder)) and os.path.isfile(file):
                    self.send_response(200)
                    kind = TYPES.get(os.path.splitext(file)[1], "application/octet-stream")
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(os.path.getsize(file)))
                    self.send_header("Cache-Control", "no-store")
                    if isolated:
                        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
                        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
                    self.end_headers()
                    with open(file, "rb") as source:
                        while chunk := source.read(1 << 20):
                            self.wfile.write(chunk)
                    return
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path == "/log":
                print(f"  page: {body.get('line')}", file=sys.stderr, flush=True)
            elif self.path == "/result":
                results.append(body)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def print_text(report):
    if "error" in report:
        print(f"error: {report['error']}")
        return
    adapter = report.get("adapter") or {}
    print(f"browser: {report['user_agent']}")
    print(f"device: {report['device']} ({report.get('backend')}); adapter: "
          f"{adapter.get('vendor')} {adapter.get('architecture') or ''} {adapter.get('description') or ''}"
          f"{' (fallback)' if adapter.get('fallback') else ''}")
    print(f"load: {report['load_first_s']:.2f} s first (download + cache), "
          f"{report['load_cached_s']:.2f} s from the Cache API")
    for load in ("first", "cached"):
        reports = report.get(f"load_{load}_reports") or []
        if reports:
            # The first report of each kind ("Fetching param cache[1/8]" → "Fetching param cache").
            kinds = {}
            for ms, text in reports:
                kinds.setdefault(text.split("[")[0].split(":")[0].strip(), ms)
            print(f"  {load} load, ms to the first report of each kind: "
                  + "; ".join(f"{kind} {ms}" for kind, ms in kinds.items()) + f"; last {reports[-1][0]}")
    print(f"prefill: {report['prompt_tokens']} tokens, first token after {report['ttft_s'] * 1000:.1f} ms "
          f"({report['prefill_tok_s']:.1f} tok/s)")
    print(f"decode: {report['gen_tokens']} tokens, {report['decode_default_sampling_tok_s']:.1f} tok/s with "
          f"the model's sampling settings, {report['decode_tok_s']:.1f} tok/s greedy")
    profile = report.get("decode_profile")
    if profile:
        calls = ", ".join(f"{value:.1f} {name}" for name, value in profile["per_token"].items())
        host = profile["host_ms_per_token"]
        print(f"decode profile (the sampled run again, its WebGPU calls wrapped): "
              f"{profile['decode_tok_s']:.1f} tok/s; per token: {calls}; "
              f"{profile['map_wait_ms_per_token']:.3f} ms in mapAsync, "
              f"{'-' if host is None else f'{host:.3f}'} ms from a token on the host to the next submit")
    for row in report["decode_at_context"]:
        print(f"decode from {row['context']} tokens of context: {row['tok_s']:.1f} tok/s ({row['steps']} steps)")


def run_page(args, mounts, page, query, isolated):
    """Serves `mounts` on 127.0.0.1, opens `page` with `query` in headless Chromium with a fresh
    profile, and returns the report the page posts."""
    results = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(mounts, results, isolated))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}{page}?{urllib.parse.urlencode(query)}"
    with tempfile.TemporaryDirectory() as profile:
        command = [args.chromium, *BASE_FLAGS, *shlex.split(args.flags), f"--user-data-dir={profile}", url]
        browser = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + args.timeout
        while not results and time.monotonic() < deadline and browser.poll() is None:
            time.sleep(0.2)
        browser.terminate()
        try:
            _, stderr = browser.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
            _, stderr = browser.communicate()
    server.shutdown()
    if not results:
        tail = stderr.decode(errors="replace")[-3000:]
        sys.exit(f"error: the page {page} posted no report (timeout or the browser exited)\n{tail}")
    return results[0]


def install_wllama():
    """web/bench/node_modules/@wllama/wllama, installed from the pinned lock file on first use."""
    folder = os.path.join(ROOT, "web/bench/node_modules/@wllama/wllama")
    if not os.path.isfile(os.path.join(folder, "esm/wasm/wllama.wasm")):
        print("bench-web: installing wllama (npm ci in web/bench)", file=sys.stderr)
        try:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=os.path.join(ROOT, "web/bench"), check=True, stdout=sys.stderr)
        except (OSError, subprocess.CalledProcessError) as error:
            sys.exit(f"error: could not install wllama with npm ({error}); --wllama needs Node and npm")
    return folder


def run_wllama(args, ours, threads):
    """wllama on the GGUF at `threads`, with the prompt length the mlc-wgpu run had."""
    gguf = os.path.realpath(args.wllama)
    if not os.path.isfile(gguf):
        sys.exit(f"error: no GGUF file at {args.wllama}")
    mounts = [("/wllama/", install_wllama()), ("/bench/", os.path.join(ROOT, "web/bench")),
              ("/gguf/", os.path.dirname(gguf))]
    query = {"gguf_url": f"/gguf/{os.path.basename(gguf)}", "threads": threads,
             "prompt_tokens": ours["prompt_tokens"], "gen_tokens": args.gen_tokens}
    print(f"bench-web: wllama at {threads} thread(s), GGUF {gguf}", file=sys.stderr)
    report = run_page(args, mounts, "/bench/wllama.html", query, isolated=True)
    if "error" not in report and report["prompt_tokens"] != ours["prompt_tokens"]:
        print(f"bench-web: note: wllama's prompt is {report['prompt_tokens']} tokens, "
              f"mlc-wgpu's {ours['prompt_tokens']}", file=sys.stderr)
    return report


def print_wllama(ours, theirs):
    if "error" in theirs:
        print(f"wllama: error: {theirs['error']}")
        return
    print(f"wllama {theirs['threads']} thread(s) (multi-thread mode: {theirs['multithread']}, "
          f"cross-origin isolated: {theirs['cross_origin_isolated']}): load {theirs['load_s']:.2f} s; "
          f"first token after {theirs['ttft_s'] * 1000:.1f} ms for {theirs['prompt_tokens']} tokens "
          f"({theirs['prefill_tok_s']:.1f} tok/s prefill, {theirs['ttft_wall_s'] * 1000:.1f} ms request wall time); "
          f"decode {theirs['decode_tok_s']:.1f} tok/s over {theirs['gen_tokens']} tokens")
    print(f"mlc-wgpu / wllama: time to first token {ours['ttft_s'] / theirs['ttft_s']:.2f}x "
          f"(lower is better), prefill {ours['prefill_tok_s'] / theirs['prefill_tok_s']:.2f}x, "
          f"decode {ours['decode_tok_s'] / theirs['decode_tok_s']:.2f}x (higher is better)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="artifact folder (mlc-chat-config.json, tensor-cache.json, shards)")
    parser.add_argument("--model-id", default="bench-model", help="the model id the page asks for")
    parser.add_argument("--device", default="webgpu", choices=["webgpu", "cpu", "auto"])
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=256)
    parser.add_argument("--contexts", default="128,1024,4096")
    parser.add_argument("--context-steps", type=int, default=64)
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--flags", default=os.environ.get("CHROMIUM_FLAGS", ""),
                        help="extra Chromium flags (e.g. the Vulkan flags of a real GPU)")
    parser.add_argument("--pkg", default=os.path.join(ROOT, "web/pkg"), help="the built wasm module")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--wllama", metavar="GGUF", help="also run wllama (llama.cpp in wasm) on this GGUF and print the ratio")
    parser.add_argument("--threads", help="thread counts, comma-separated (e.g. 1,2): wllama's, and with "
                        "--device cpu also the mlc-wgpu CPU engine's (in a worker of an isolated page); "
                        "default: wllama 1, mlc-wgpu in the page as a site runs it")
    parser.add_argument("--pkg-threads", default=os.path.join(ROOT, "web/pkg-threads"),
                        help="the threaded wasm module (scripts/build-web.sh --threads)")
    args = parser.parse_args()
    counts = [int(n) for n in args.threads.split(",")] if args.threads else [None]
    in_worker = args.device == "cpu" and args.threads is not None

    mounts = [("/web/js/", os.path.join(ROOT, "web/js")), ("/web/pkg/", args.pkg),
              ("/web/pkg-threads/", args.pkg_threads), ("/bench/", os.path.join(ROOT, "web/bench")),
              (f"/models/{args.model_id}/resolve/main/", args.model)]
    if not os.path.isfile(os.path.join(args.pkg, "mlc_wgpu_web_bg.wasm")):
        sys.exit(f"error: no wasm module in {args.pkg}: run scripts/build-web.sh first")
    if in_worker and max(counts) > 1 and not os.path.isfile(os.path.join(args.pkg_threads, "mlc_wgpu_web_bg.wasm")):
        sys.exit(f"error: no threaded wasm module in {args.pkg_threads}: run scripts/build-web.sh --threads first")
    reports = []
    for threads in counts:
        query = {
            "model_id": args.model_id, "model_url": f"/models/{args.model_id}/", "device": args.device,
            "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens, "contexts": args.contexts,
            "context_steps": args.context_steps,
        }
        if in_worker:
            query["cpu_threads"] = threads
        print(f"bench-web: {args.device} in {os.path.basename(args.chromium)}, model {args.model}"
              + (f", {threads} CPU thread(s) in a worker" if in_worker else ""), file=sys.stderr)
        report = run_page(args, mounts, "/bench/index.html", query, isolated=in_worker)
        if in_worker and "error" not in report and report.get("cpu_threads") != threads:
            report["error"] = f"asked for {threads} CPU thread(s), the engine reports {report.get('backend')!r}"
        if args.wllama and "error" not in report:
            report["wllama"] = run_wllama(args, report, threads or 1)
        reports.append(report)
        if not args.json:
            if len(counts) > 1:
                print(f"== {threads} thread(s)")
            print_text(report)
            if "wllama" in report:
                print_wllama(report, report["wllama"])
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports))
    sys.exit(1 if any("error" in r or "error" in r.get("wllama", {}) for r in reports) else 0)


if __name__ == "__main__":
    main()
