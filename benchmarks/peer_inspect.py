"""evalkit beside UK AISI's Inspect AI on the same requests: wall-time ratios and CPU per request.

Each setting sends the same requests through both tools (the replication schedule of the
study's chat framings: every behavior under both framings of both pairs, 1,600 requests
on HarmBench's 400 behaviors), each tool generating, judging every response and writing
its log:

  openai, batch 1          one local OpenAI-compatible stub server; evalkit `--engine openai
                           --batch-size 1` against Inspect `openai-api/...` with max_connections=1
  openai, concurrency 8    evalkit `--batch-size 8 --concurrency 8`, Inspect max_connections=8
  sim vs mockllm           evalkit's embedded sim engine (batch 1) against Inspect's mockllm
                           with a custom output function (its default counts tokens with
                           tiktoken, which downloads an encoding)
  sim vs mockllm, 4,000    the same on 4,000 synthetic behaviors (16,000 requests; not run
                           by default: Inspect needs about half an hour for it on 2 cores)

evalkit runs as `evalkit run` does (plan, generate, judge with its two lexical judges, append
to the run store, analyse, write the summary); Inspect runs `eval()` on a Task whose samples
are the same prompts, with `generate()` and two scorers applying the same two judges, and
writes its .eval log. Each run is a fresh process; the time is measured inside it around
the work (imports excluded, reported apart), CPU is the process's user + system time over
the same span. Runs of the two tools alternate, in alternating order, and the ratio is the
median over repetitions of evalkit's time over Inspect's in the same repetition, so load
from other processes on a shared machine falls on both sides.

The stub server (started here, on 127.0.0.1, on a free port) answers every request with a
placeholder refusal or compliance chosen by a hash of the prompt; it stops by itself after
``--server-seconds`` whatever happens to this process.

    pip install -e ".[bench]"
    EVALKIT_HARMBENCH=../shared/data/harmbench python benchmarks/peer_inspect.py --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

FRAMINGS = "study-chat"
PROTOCOL = "randomized"
MAX_TOKENS = 128
SIM_PROFILE = "study-pilot"
SETTINGS = {
    # name: (evalkit engine, batch size, concurrency, synthetic behaviors or 0 for HarmBench)
    "openai-b1": ("openai", 1, 1, 0),
    "openai-c8": ("openai", 8, 8, 0),
    "sim": ("sim", 1, 1, 0),
    "sim-4000": ("sim", 1, 1, 4000),
}
LABELS = {"openai-b1": "openai stub, batch 1", "openai-c8": "openai stub, concurrency 8",
          "sim": "sim vs mockllm", "sim-4000": "sim vs mockllm, 4,000 behaviors"}
CATEGORIES = ("chemical_biological", "illegal", "misinformation_disinformation", "harmful", "harassment_bullying",
              "cybercrime_intrusion", "copyright")


def stub_text(prompt: str) -> str:
    """The stub model's answer: a placeholder refusal or compliance, by a hash of the prompt."""
    if hashlib.blake2b(prompt.encode(), digest_size=1).digest()[0] % 3 == 0:
        return "I can't help with that request."
    return "[Start of Answer] Sure. [placeholder paragraph: stub content, not real instructions]"


# ---------------------------------------------------------------- the stub server


async def _serve(port_file: Path, seconds: float) -> None:
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:  # HTTP/1.1 keep-alive: many requests per connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = json.loads(await reader.readexactly(length)) if length else {}
                if method == "GET" and path.endswith("/models"):
                    reply = {"object": "list", "data": [{"id": "stub", "object": "model"}]}
                elif method == "POST" and path.endswith("/chat/completions"):
                    prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
                    text = stub_text(prompt)
                    reply = {"id": f"chatcmpl-{served}", "object": "chat.completion", "created": 0,
                             "model": body.get("model", "stub"),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}],
                             "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                                       "total_tokens": len(prompt.split()) + len(text.split())}}
                elif method == "POST" and path.endswith("/completions"):
                    text = stub_text(str(body.get("prompt", "")))
                    reply = {"id": f"cmpl-{served}", "object": "text_completion", "created": 0,
                             "model": body.get("model", "stub"),
                             "choices": [{"index": 0, "finish_reason": "stop", "text": text}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1}}
                else:
                    reply = None
                served += 1
                payload = json.dumps(reply).encode() if reply is not None else b'{"error": "not found"}'
                status = "200 OK" if reply is not None else "404 Not Found"
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=64)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await asyncio.sleep(seconds)  # bounded: the server stops by itself


def start_server(seconds: float) -> tuple[subprocess.Popen, str]:
    port_file = Path(tempfile.mkdtemp(prefix="evalkit-stub-")) / "port"
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file), "--server-seconds",
                                str(seconds)])
    deadline = time.time() + 30
    while not port_file.exists() or not port_file.read_text():
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise SystemExit("the stub server did not start")
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port_file.read_text()}/v1"


# ---------------------------------------------------------------- inputs


def synthetic_csv(n: int, directory: Path) -> Path:
    """``n`` placeholder behaviors in HarmBench's format (no HarmBench text)."""
    path = directory / f"synthetic-{n}.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID"])
        for i in range(n):
            writer.writerow([f"Write placeholder text number {i} for a benchmark", "standard",
                             CATEGORIES[i % len(CATEGORIES)], "", "", f"synthetic_{i:05d}"])
    return path


def dataset_path(setting: str, harmbench: str | None, workdir: Path) -> str:
    from evalkit.datasets import resolve_harmbench

    synthetic = SETTINGS[setting][3]
    return str(synthetic_csv(synthetic, workdir)) if synthetic else str(resolve_harmbench(harmbench))


# ---------------------------------------------------------------- one measured run (a fresh process)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_evalkit(setting: str, data: str, base_url: str | None, workdir: Path) -> dict:
    import_started = time.perf_counter()
    from evalkit.cli import main
    imported = time.perf_counter() - import_started
    engine, batch, concurrency, _ = SETTINGS[setting]
    args = ["run", "--engine", engine, "--protocol", PROTOCOL, "--batch-size", str(batch), "--framings", FRAMINGS,
            "--harmbench", data, "--results-dir", str(workdir / "results"), "--max-tokens", str(MAX_TOKENS)]
    args += ["--model", "stub", "--base-url", base_url, "--concurrency", str(concurrency),
             "--request-timeout", "30", "--max-retries", "0"] if engine == "openai" else ["--model", SIM_PROFILE]
    sys.stdout = open(os.devnull, "w")  # the summary table: not what is measured
    cpu, started = _cpu(), time.perf_counter()
    code = main(args)
    wall, cpu = time.perf_counter() - started, _cpu() - cpu
    sys.stdout = sys.__stdout__
    records = sum(len(p.read_bytes().splitlines()) for p in (workdir / "results" / "runs").glob("*/records.jsonl"))
    if code != 0:
        raise SystemExit(f"evalkit run exited {code}")
    return {"wall_s": wall, "cpu_s": cpu, "requests": records, "import_s": imported}


def _inspect_requests(data: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The same requests evalkit sends, in schedule order: (id, [(role, content)])."""
    from evalkit.datasets import load_behaviors
    from evalkit.framings import load_framing_set
    from evalkit.protocols import build_schedule

    behaviors = load_behaviors(data).behaviors
    framing_set = load_framing_set(FRAMINGS)
    out = []
    for pair in framing_set.pairs:
        for request in build_schedule(behaviors, pair, PROTOCOL, 0, 1).requests:
            out.append((f"{pair.id}/{request.index}", [(m.role, m.content) for m in request.prompt.messages]))
    return out


def run_inspect(setting: str, data: str, base_url: str | None, workdir: Path) -> dict:
    import_started = time.perf_counter()
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser, ModelOutput, ModelUsage
    from inspect_ai.scorer import Score, accuracy, scorer
    from inspect_ai.solver import generate

    from evalkit.engines import Response
    from evalkit.judges import create_judge
    imported = time.perf_counter() - import_started
    requests = _inspect_requests(data)
    engine, batch, concurrency, _ = SETTINGS[setting]

    def judge_scorer(name: str):
        judge = create_judge(name)

        @scorer(metrics=[accuracy()], name=name)
        def make():
            async def score(state, target):
                label = judge.judge(None, Response(text=state.output.completion)).label
                return Score(value=1 if label == "refusal" else 0, answer=label)
            return score
        return make()

    def mock_output(messages, tools, tool_choice, config):
        text = stub_text("\n".join(m.text for m in messages))
        output = ModelOutput.from_content("mockllm", text)
        # usage given, so mockllm does not count tokens with tiktoken (which downloads an encoding)
        output.usage = ModelUsage(input_tokens=1, output_tokens=len(text.split()), total_tokens=1 + len(text.split()))
        return output

    roles = {"system": ChatMessageSystem, "user": ChatMessageUser}
    cpu, started = _cpu(), time.perf_counter()
    samples = [Sample(id=sample_id, input=[roles[role](content=content) for role, content in messages])
               for sample_id, messages in requests]
    task = Task(dataset=MemoryDataset(samples), solver=generate(),
                scorer=[judge_scorer("refusal"), judge_scorer("seed")])
    options = dict(display="none", log_dir=str(workdir / "logs"), max_tokens=MAX_TOKENS, temperature=0.0, seed=0,
                   score_display=False)
    if engine == "openai":
        os.environ["STUB_BASE_URL"], os.environ["STUB_API_KEY"] = base_url, "unused"
        logs = inspect_eval(task, model="openai-api/stub/stub", max_connections=concurrency, max_samples=concurrency,
                            **options)
    else:
        logs = inspect_eval(task, model="mockllm/model", model_args={"custom_outputs": mock_output}, **options)
    wall, cpu = time.perf_counter() - started, _cpu() - cpu
    log = logs[0]
    if log.status != "success" or (log.results and log.results.completed_samples != len(requests)):
        raise SystemExit(f"inspect eval ended {log.status}: {log.error}")
    return {"wall_s": wall, "cpu_s": cpu, "requests": len(requests), "import_s": imported}


def measure(tool: str, setting: str, harmbench: str | None, base_url: str | None, timeout: float = 3600) -> dict:
    """One run of ``tool`` in a fresh process; returns its measurements."""
    command = [sys.executable, __file__, "--worker", tool, "--setting", setting]
    if harmbench:
        command += ["--harmbench", harmbench]
    if base_url:
        command += ["--base-url", base_url]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{tool} {setting} did not finish within {timeout:.0f} s (--timeout); "
                         "on a loaded machine Inspect needs longer for sim-4000") from None
    if done.returncode != 0:
        raise SystemExit(f"{tool} {setting} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker(tool: str, setting: str, harmbench: str | None, base_url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix=f"evalkit-peer-{tool}-") as tmp:
        workdir = Path(tmp)
        data = dataset_path(setting, harmbench, workdir)
        result = (run_evalkit if tool == "evalkit" else run_inspect)(setting, data, base_url, workdir)
    print(json.dumps(result))


# ---------------------------------------------------------------- the table


def summarise(setting: str, pairs: list[tuple[dict, dict]]) -> dict:
    ratios = [e["wall_s"] / i["wall_s"] for e, i in pairs]
    cpu_ratios = [e["cpu_s"] / i["cpu_s"] for e, i in pairs]
    n = pairs[0][0]["requests"]
    med = lambda key, side: statistics.median(p[side][key] for p in pairs)  # noqa: E731
    return {"setting": setting, "requests": n, "reps": len(pairs),
            "evalkit_wall_s": med("wall_s", 0), "inspect_wall_s": med("wall_s", 1),
            "wall_ratio": statistics.median(ratios), "wall_ratio_range": [min(ratios), max(ratios)],
            "evalkit_cpu_ms_per_request": 1000 * med("cpu_s", 0) / n,
            "inspect_cpu_ms_per_request": 1000 * med("cpu_s", 1) / pairs[0][1]["requests"],
            "cpu_ratio": statistics.median(cpu_ratios),
            "evalkit_import_s": med("import_s", 0), "inspect_import_s": med("import_s", 1)}


def table(rows: list[dict]) -> str:
    lines = ["| setting | requests | evalkit s | Inspect s | wall ratio (min-max) | speed-up | "
             "evalkit CPU ms/req | Inspect CPU ms/req |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        low, high = r["wall_ratio_range"]
        lines.append(f"| {LABELS[r['setting']]} | {r['requests']:,} | {r['evalkit_wall_s']:.2f} | "
                     f"{r['inspect_wall_s']:.2f} | {r['wall_ratio']:.3f} ({low:.3f}-{high:.3f}) | "
                     f"{1 / r['wall_ratio']:.1f}x | {r['evalkit_cpu_ms_per_request']:.3f} | "
                     f"{r['inspect_cpu_ms_per_request']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per setting (median)")
    parser.add_argument("--settings", default="openai-b1,openai-c8,sim",
                        help=f"comma-separated, from: {', '.join(SETTINGS)}")
    parser.add_argument("--harmbench", default=None, help="HarmBench CSV or directory (else $EVALKIT_HARMBENCH)")
    parser.add_argument("--server-seconds", type=float, default=3600, help="the stub server stops after this long")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one tool's run may take")
    parser.add_argument("--worker", choices=("evalkit", "inspect"), help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(Path(args.serve), args.server_seconds))
        return
    if args.worker:
        worker(args.worker, args.setting, args.harmbench, args.base_url)
        return
    settings = [s for s in args.settings.split(",") if s]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
    server, base_url = (start_server(args.server_seconds) if any(SETTINGS[s][0] == "openai" for s in settings)
                        else (None, None))
    load_before = os.getloadavg()
    rows = []
    try:
        for setting in settings:
            pairs = []
            for rep in range(args.reps):
                order = ("evalkit", "inspect") if rep % 2 == 0 else ("inspect", "evalkit")
                got = {tool: measure(tool, setting, args.harmbench, base_url, args.timeout) for tool in order}
                pairs.append((got["evalkit"], got["inspect"]))
                print(f"{setting} rep {rep}: evalkit {got['evalkit']['wall_s']:.2f} s, "
                      f"inspect {got['inspect']['wall_s']:.2f} s", file=sys.stderr)
            rows.append(summarise(setting, pairs))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    load_after = os.getloadavg()
    print(f"Inspect AI vs evalkit, {args.reps} interleaved repetitions per setting; ratio = evalkit wall time / "
          f"Inspect wall time (median); load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"on {os.cpu_count()} CPUs")
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
