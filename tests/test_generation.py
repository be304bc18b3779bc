"""Caption backends: the OpenAI-compatible client against a fault-injecting server and a real
`transformers serve`, the transformers backend on the tiny Qwen3-VL, resumable caches, the factory."""
import base64
import io
import json
import sys
import time

import pytest
from PIL import Image

from editcaption import generation
from editcaption.data.loaders import load_own_pairs
from editcaption.world.synthetic import generate_pairs
from editcaption.generation import (BACKENDS, OpenAIBackend, TransformersBackend, image_data_url, make_backend,
                                    openai_messages, read_cache)
from editcaption.models import build_tiny_model, load_model_and_processor
from editcaption.prompts import PROMPT_VERSION, generate_instructions
from editcaption.records import RecordError
from fault_server import FaultServer, Reply, completion, empty, garbage, ok, rate_limited, server_error, slow
from real_data import require_real_pairs
from serve_helper import free_port, transformers_serve


class Interrupt(Exception):
    """Stands in for a kill in the middle of a run."""


def colour_pairs(n: int, prefix: str = "p") -> list[dict]:
    """n rows with distinct solid-colour images (each pair has its own request key)."""
    return [{"id": f"{prefix}{i}", "source_image": Image.new("RGB", (32, 32), (40 * i % 256, 10, 200)),
             "target_image": Image.new("RGB", (32, 32), (10, 40 * i % 256, 90))} for i in range(n)]


def key(row: dict) -> str:
    """The fault server's key for a pair's requests."""
    return image_data_url(row["source_image"])


def stop_after(k: int):
    seen = []

    def callback(caption):
        seen.append(caption.id)
        if len(seen) == k:
            raise Interrupt(f"stopped after {k}")
    return callback


def fast_client(server: FaultServer, **params) -> OpenAIBackend:
    return OpenAIBackend("fault-model", server.url, **{"timeout": 5.0, "max_retries": 2, "backoff_s": 0.01,
                                                       "max_workers": 4, **params})


# ------------------------------------------------------------------------------------- messages, factory

def test_openai_messages_are_source_target_then_prompt():
    source, target = Image.new("RGB", (20, 10), "red"), Image.new("RGB", (10, 20), "blue")
    (message,) = openai_messages(source, target, "say it")
    assert message["role"] == "user"
    kinds = [part["type"] for part in message["content"]]
    assert kinds == ["image_url", "image_url", "text"] and message["content"][2]["text"] == "say it"
    for part, image in zip(message["content"], (source, target)):
        url = part["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert decoded.format == "PNG" and decoded.tobytes() == image.tobytes()


def test_make_backend_checks_names_and_parameters(monkeypatch):
    with pytest.raises(ValueError, match="unknown caption backend 'nope'.*openai"):
        make_backend("nope")
    with pytest.raises(ValueError, match=r"takes no parameter \['colour'\]"):
        make_backend("openai", model="m", base_url="http://127.0.0.1:1/v1", colour="red")
    with pytest.raises(ValueError, match=r"needs the parameter\(s\) \['base_url'\]"):
        make_backend("openai", model="m")
    backend = make_backend("openai", model_name_or_path="glm-4.5v", base_url="http://127.0.0.1:1/v1", batch_size=3)
    assert backend.model == "glm-4.5v" and backend.batch_size == 3
    with pytest.raises(ValueError, match="both model"):
        make_backend("openai", model="a", model_name_or_path="b", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="only with do_sample"):
        make_backend("transformers", model="/x", temperature=0.7)

    class Echo(generation.CaptionBackend):
        name = "echo"

        def _run(self, pairs, prompt):
            return (generation.from_text(p.id, f"echo {p.id}") for p in pairs)

    monkeypatch.setitem(BACKENDS, "echo", Echo)  # the registration hook other modules use
    assert make_backend("echo", model="none").generate(colour_pairs(2), progress=False) == ["echo p0", "echo p1"]


def test_vllm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    with pytest.raises(ImportError, match=r"pip install -e \.\[cluster\]"):
        make_backend("vllm", model="Qwen/Qwen3-VL-32B-Instruct")


def test_a_remote_endpoint_needs_its_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("EDITCAPTION_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="set the environment variable EDITCAPTION_TEST_KEY"):
        OpenAIBackend("gpt-4.1", "https://api.example.com/v1", api_key_env="EDITCAPTION_TEST_KEY")
    OpenAIBackend("local", "http://127.0.0.1:8000/v1", api_key_env="EDITCAPTION_TEST_KEY")  # no key needed here
    with pytest.raises(ValueError, match="base_url must be an http"):
        OpenAIBackend("m", "127.0.0.1:8000/v1")


def test_bad_pairs_are_named():
    rows = colour_pairs(2)
    rows[1]["id"] = "p0"
    with pytest.raises(RecordError, match="row p0, field 'id': duplicate id"):
        TransformersBackend("/unused").generate(rows, progress=False)
    rows = colour_pairs(1)
    rows[0]["target_image"] = 3
    with FaultServer() as server, pytest.raises(RecordError, match="row p0, field 'target_image'"):
        fast_client(server).generate(rows, progress=False)


# ----------------------------------------------------------------------------------- the fault server

def test_retries_backoff_and_recorded_failures(tmp_path):
    rows = colour_pairs(8)
    script = {
        key(rows[1]): [rate_limited(1)],  # then the default reply
        key(rows[2]): [server_error(500), server_error(503)],
        key(rows[3]): [slow(1.0)],  # answered after the client's 0.4 s timeout
        key(rows[4]): [garbage()] * 3,
        key(rows[5]): [empty()],
        key(rows[6]): [server_error()] * 3,
        key(rows[7]): [Reply(400, {"error": {"message": "image too large"}})],
    }
    cache = tmp_path / "captions.jsonl"
    with FaultServer(script, default=ok(" Move the red square to the left. ")) as server:
        backend = fast_client(server, timeout=0.4)
        start = time.perf_counter()
        texts = backend.generate(rows, cache_path=cache, progress=False)
        elapsed = time.perf_counter() - start
        counts = [server.count(key(row)) for row in rows]
    good = "Move the red square to the left."
    assert texts == [good] * 4 + ["", "", "", ""]
    assert counts == [1, 2, 3, 2, 3, 1, 3, 1]
    assert elapsed >= 1.0  # Retry-After: 1 was honoured
    by_id = {c.id: c for c in backend.last_results}
    assert [by_id[f"p{i}"].attempts for i in range(4)] == [1, 2, 3, 2]
    assert "not JSON" in by_id["p4"].reason and "502 Bad Gateway" in by_id["p4"].reason and by_id["p4"].retryable
    assert "no text" in by_id["p5"].reason and not by_id["p5"].retryable
    assert by_id["p6"].reason.startswith("HTTP 500") and "after 3 attempts" in by_id["p6"].reason
    assert "HTTP 400" in by_id["p7"].reason and "image too large" in by_id["p7"].reason and not by_id["p7"].retryable
    lines = read_cache(cache)
    assert sorted(line["id"] for line in lines) == [f"p{i}" for i in range(8)]
    for line in lines:
        assert (line["backend"], line["model"], line["prompt_version"]) == ("openai", "fault-model", PROMPT_VERSION)
        assert (line["status"] == "ok") == bool(line["instruction"]) == (line["reason"] == "")
        if line["status"] == "ok":
            assert line["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert backend.stats["n_failed"] == 4 and backend.stats["completion_tokens"] == 5 * 7  # the empty reply too


def test_timeouts_and_refused_connections_fail_after_the_retries():
    rows = colour_pairs(1)
    with FaultServer(default=slow(0.6)) as server:
        backend = fast_client(server, timeout=0.2, max_retries=1)
        assert backend.generate(rows, progress=False) == [""]
        assert server.count() == 2
    (caption,) = backend.last_results
    assert caption.reason == "timed out after 0.2 s (after 2 attempts)" and caption.retryable
    backend = OpenAIBackend("m", f"http://127.0.0.1:{free_port()}/v1", max_retries=1, backoff_s=0.01)
    assert backend.generate(rows, progress=False) == [""]
    (caption,) = backend.last_results
    assert caption.reason.startswith("connection error: ConnectError") and caption.attempts == 2 and caption.retryable


def test_a_rerun_retries_transient_failures_only_by_default(tmp_path):
    rows = colour_pairs(3)
    transient, permanent = key(rows[1]), key(rows[2])
    cache = tmp_path / "captions.jsonl"
    with FaultServer({transient: [server_error()] * 3, permanent: [empty()]}) as server:
        backend = fast_client(server)
        assert backend.generate(rows, cache_path=cache, progress=False)[1:] == ["", ""]
        assert server.count() == 1 + 3 + 1
        assert backend.generate(rows, cache_path=cache, progress=False, retry_failed="none")[1:] == ["", ""]
        assert server.count() == 5  # nothing asked again
        texts = backend.generate(rows, cache_path=cache, progress=False)
        assert server.count() == 6 and server.count(transient) == 4  # only the transient failure
        assert texts[1] and texts[2] == "" and backend.stats["n_cached"] == 2
        texts = backend.generate(rows, cache_path=cache, progress=False, retry_failed="all")
        assert server.count() == 7 and server.count(permanent) == 2 and all(texts)
    assert len(read_cache(cache)) == 3 + 1 + 1


def test_requests_run_concurrently_and_results_keep_pair_order():
    rows = colour_pairs(8)
    text_of = {key(row): f"Caption of {row['id']}." for row in rows}
    with FaultServer(default=lambda request: Reply(200, completion(text_of[request["key"]]), delay=0.3)) as server:
        backend = fast_client(server, max_workers=4, batch_size=8)
        start = time.perf_counter()
        texts = backend.generate(rows, progress=False)
        elapsed = time.perf_counter() - start
    assert texts == [f"Caption of p{i}." for i in range(8)]
    assert elapsed < 8 * 0.3 / 2  # one at a time would take 2.4 s
    assert backend.stats["pairs_per_s"] > 8 / 2.4


@pytest.mark.parametrize("workers", [1, 3])
def test_an_interrupted_run_never_asks_again_for_answered_pairs(tmp_path, workers):
    rows = colour_pairs(6)
    cache = tmp_path / "captions.jsonl"
    with FaultServer(default=ok("Turn the square blue.")) as server:
        with pytest.raises(Interrupt):
            fast_client(server, max_workers=workers, batch_size=workers).generate(
                rows, cache_path=cache, progress=False, on_result=stop_after(2))
        answered = {line["id"] for line in read_cache(cache)}
        assert len(answered) == 2
        backend = fast_client(server, max_workers=workers, batch_size=workers)
        assert backend.generate(rows, cache_path=cache, progress=False) == ["Turn the square blue."] * 6
        assert all(server.count(key(row)) == 1 for row in rows if row["id"] in answered)
        assert all(server.count(key(row)) >= 1 for row in rows)
    assert backend.stats["n_cached"] == 2 and backend.stats["n_generated"] == 4


def test_the_api_key_never_lands_in_the_cache(tmp_path, monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("EDITCAPTION_TEST_KEY", secret)
    rows = colour_pairs(2)

    def echo_key(request):  # a server that quotes the key in its error, as some do
        return Reply(401, {"error": {"message": f"invalid key: {request['headers'].get('authorization')}"}})

    cache = tmp_path / "captions.jsonl"
    with FaultServer({key(rows[0]): [echo_key]}) as server:
        backend = OpenAIBackend("m", server.url, api_key_env="EDITCAPTION_TEST_KEY", max_retries=0)
        backend.generate(rows, cache_path=cache, progress=False)
        assert {r["headers"]["authorization"] for r in server.requests} == {f"Bearer {secret}"}
    assert "invalid key: Bearer ***" in backend.last_results[0].reason
    assert secret not in cache.read_text() and "SECRET" not in cache.read_text()
    assert secret not in repr(backend) and secret not in json.dumps(backend.stats)


def test_a_cache_cut_by_a_kill_or_written_by_another_model_is_handled(tmp_path, caplog):
    rows = colour_pairs(3)
    cache = tmp_path / "captions.jsonl"
    line = {"id": "p0", "instruction": "Old.", "status": "ok", "reason": "", "retryable": False, "backend": "openai",
            "model": "fault-model", "prompt_version": PROMPT_VERSION}
    other = {**line, "id": "p1", "model": "another-model"}
    cache.write_text(json.dumps(line) + "\n" + json.dumps(other) + "\n" + json.dumps({**line, "id": "p2"})[:30])
    with FaultServer() as server:
        texts = fast_client(server).generate(rows, cache_path=cache, progress=False)
        assert server.count(key(rows[0])) == 0 and server.count() == 2
    assert texts[0] == "Old." and texts[1] and texts[2]
    assert "ignored 1 unreadable line(s) and 1 line(s) of another backend, model or prompt" in caplog.text
    assert sorted(item["id"] for item in read_cache(cache)) == ["p0", "p1", "p1", "p2"]  # appended on a fresh line
    with FaultServer() as server:  # a different prompt is a different cache key
        fast_client(server).generate(rows, prompt="Describe the change.", cache_path=cache, progress=False)
        assert server.count() == 3
    cache.write_text(json.dumps({"id": "p0", "score": 3}) + "\n")
    with pytest.raises(RecordError, match=f"file {cache}, row 1, field 'instruction'"):
        TransformersBackend("/unused").generate(rows, cache_path=cache, progress=False)


# --------------------------------------------------------------------------- the tiny model, locally

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model("smoke", tmp_path_factory.mktemp("tiny") / "smoke", seed=0)


@pytest.fixture(scope="module")
def synthetic_pairs():
    return generate_pairs(3, seed=0, size=64, progress=False)


@pytest.fixture(scope="module")
def reference_texts(tiny_dir, synthetic_pairs):
    """`prompts.generate_instructions` on the three pairs, two per batch, 8 new tokens."""
    model, processor = load_model_and_processor(tiny_dir)
    images = zip(synthetic_pairs["source_image"], synthetic_pairs["target_image"])
    return generate_instructions(model, processor, images, max_new_tokens=8, batch_size=2)


def test_transformers_backend_batches_like_generate_instructions(tiny_dir, synthetic_pairs, reference_texts):
    backend = make_backend("transformers", model_name_or_path=str(tiny_dir), batch_size=2, max_new_tokens=8)
    texts = backend.generate(synthetic_pairs, progress=False)
    assert len(texts) == 3 and texts == reference_texts
    for caption in backend.last_results:
        assert caption.ok == bool(caption.instruction) and (caption.ok or "no text" in caption.reason)


def test_transformers_backend_resumes_from_its_cache(tiny_dir, synthetic_pairs, reference_texts, tmp_path):
    cache = tmp_path / "captions.jsonl"
    backend = TransformersBackend(tiny_dir, batch_size=2, max_new_tokens=8)
    with pytest.raises(Interrupt):  # stopped after the first batch
        backend.generate(synthetic_pairs, cache_path=cache, progress=False, on_result=stop_after(2))
    assert len(read_cache(cache)) == 2
    assert backend.generate(synthetic_pairs, cache_path=cache, progress=False) == reference_texts
    assert backend.stats["n_cached"] == 2 and backend.stats["n_generated"] == 1
    assert len(read_cache(cache)) == 3
    assert backend.generate(synthetic_pairs, cache_path=cache, progress=False) == reference_texts
    assert backend.stats["n_generated"] == 0


# ------------------------------------------------------------------------ a real transformers serve

@pytest.fixture(scope="module")
def served(tiny_dir, tmp_path_factory):
    """`transformers serve` of the tiny Qwen3-VL on 127.0.0.1: (base_url, model name, log path, start seconds)."""
    with transformers_serve(tiny_dir, tmp_path_factory.mktemp("serve")) as (base_url, log_path, started):
        yield base_url, str(tiny_dir), log_path, started


def _posts(log_path, at_least: int = 0) -> int:
    """Chat-completion requests in the server's access log (waits briefly for the log to catch up)."""
    deadline = time.perf_counter() + 3
    while True:
        count = log_path.read_text().count('"POST /v1/chat/completions')
        if count >= at_least or time.perf_counter() > deadline:
            return count
        time.sleep(0.05)


@pytest.mark.slow
def test_openai_backend_against_transformers_serve_on_real_pairs(served, tiny_dir):
    base_url, model, log_path, started = served
    pairs = load_own_pairs(require_real_pairs(), n=2, seed=0)
    backend = make_backend("openai", model=model, base_url=base_url, max_new_tokens=8, max_workers=2)
    texts = backend.generate(pairs, progress=False)
    assert len(texts) == 2
    for caption in backend.last_results:
        assert (caption.ok and caption.instruction.strip() and caption.usage["prompt_tokens"] > 0) or (
            not caption.ok and caption.reason)
    # the server runs the same model and chat template: greedy decoding gives the local backend's text
    assert texts == TransformersBackend(tiny_dir, batch_size=1, max_new_tokens=8).generate(pairs, progress=False)
    print(f"\ntransformers serve ready in {started:.1f} s; {backend.stats['pairs_per_s']:.2f} pairs/s")


@pytest.mark.slow
def test_kill_and_rerun_against_transformers_serve(served, synthetic_pairs, tmp_path):
    base_url, model, log_path, _ = served
    cache = tmp_path / "captions.jsonl"
    before = _posts(log_path)
    first = make_backend("openai", model=model, base_url=base_url, max_new_tokens=8, max_workers=1, batch_size=1)
    with pytest.raises(Interrupt):
        first.generate(synthetic_pairs, cache_path=cache, progress=False, on_result=stop_after(2))
    assert _posts(log_path, before + 2) == before + 2 and len(read_cache(cache)) == 2
    again = make_backend("openai", model=model, base_url=base_url, max_new_tokens=8, max_workers=1, batch_size=1)
    texts = again.generate(synthetic_pairs, cache_path=cache, progress=False)
    assert _posts(log_path, before + 3) == before + 3  # only the unanswered pair was sent
    lines = read_cache(cache)
    assert sorted(line["id"] for line in lines) == sorted(synthetic_pairs["id"])  # one line per pair
    assert again.stats["n_cached"] == 2 and len(texts) == 3
    assert texts[:2] == [line["instruction"] for line in lines[:2]]


@pytest.mark.slow
def test_a_wrong_model_name_is_a_recorded_failure(served):
    base_url, _, _, _ = served
    backend = make_backend("openai", model="not-served", base_url=base_url, max_new_tokens=4)
    assert backend.generate(colour_pairs(1), progress=False) == [""]
    (caption,) = backend.last_results
    assert caption.reason.startswith("HTTP 400") and "not-served" in caption.reason and not caption.retryable


def test_a_checkpoint_retrained_in_place_does_not_reuse_cached_captions(tmp_path):
    from editcaption.generation import TransformersBackend

    (tmp_path / "model.safetensors").write_bytes(b"old weights")
    before = TransformersBackend(str(tmp_path)).cache_identity
    (tmp_path / "model.safetensors").write_bytes(b"new weights, retrained")
    after = TransformersBackend(str(tmp_path)).cache_identity
    assert before.startswith(str(tmp_path)) and before != after
    assert TransformersBackend("org/hub-model").cache_identity == "org/hub-model"
