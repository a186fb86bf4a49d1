"""The character-level training demo (bptt_train): clipping, optimizers, chunked truncated BPTT,
interruption, and the ``train`` command.

Every test here is fast (the whole file runs in a few seconds); none needs torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bptt_train
from bptt_train import (
    SGD,
    Adagrad,
    TrainingInterrupted,
    clip_by_global_norm,
    default_text,
    encode,
    global_norm,
    make_optimizer,
    sample,
    train_char_lm,
)
from bptt_train.cli import EXIT_INTERRUPTED, JSON_NAME, PNG_NAME, SAMPLE_NAME, add_train_arguments, run_train
from manual_bptt import RNNParams, bptt, forward
from manual_bptt.testing import assert_close

HELLO = "hello world " * 50  # K = 8 characters, period 12
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def random_params(seed: int, D: int = 5, H: int = 4, K: int = 3) -> RNNParams:
    """Non-symmetric shapes D != H != K, every entry nonzero."""
    rng = np.random.default_rng(seed)
    return RNNParams(
        U=rng.standard_normal((H, D)),
        W=rng.standard_normal((H, H)),
        V=rng.standard_normal((K, H)),
        b=rng.standard_normal(H),
        c=rng.standard_normal(K),
    )


def flat(p: RNNParams) -> np.ndarray:
    return np.concatenate([a.ravel() for a in p.arrays()])


def assert_params_close(actual: RNNParams, expected: RNNParams, rtol: float = 1e-14) -> None:
    assert [n for n, _ in actual.items()] == [n for n, _ in expected.items()]
    for (name, a), (_, e) in zip(actual.items(), expected.items(), strict=True):
        assert_close(a, e, name=name, rtol=rtol, atol=0.0)


# ---------------------------------------------------------------------------------------------
# clip_by_global_norm
# ---------------------------------------------------------------------------------------------
def test_global_norm_is_the_norm_of_all_entries_together() -> None:
    g = random_params(0)
    assert global_norm(g) == pytest.approx(float(np.linalg.norm(flat(g))), rel=1e-14)


def test_clip_above_max_norm_rescales_to_exactly_max_norm_keeping_the_direction() -> None:
    g = random_params(1)
    norm = float(np.linalg.norm(flat(g)))
    max_norm = norm / 3.7
    clipped, reported = clip_by_global_norm(g, max_norm)
    assert reported == pytest.approx(norm, rel=1e-14)  # the norm before clipping
    assert float(np.linalg.norm(flat(clipped))) == pytest.approx(max_norm, rel=1e-14)
    # the same direction: every array scaled by the one factor max_norm / norm
    for (name, c), (_, a) in zip(clipped.items(), g.items(), strict=True):
        assert_close(c, a * (max_norm / norm), name=name, rtol=1e-14, atol=0.0)
    cos = flat(clipped) @ flat(g) / (np.linalg.norm(flat(clipped)) * norm)
    assert cos == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("max_norm", [None, math.inf, "above", "equal"])
def test_clip_at_or_below_max_norm_leaves_the_gradient_unchanged(max_norm: object) -> None:
    g = random_params(2)
    norm = float(np.linalg.norm(flat(g)))
    limit = {"above": 2 * norm, "equal": global_norm(g)}.get(max_norm, max_norm)  # type: ignore[arg-type]
    clipped, reported = clip_by_global_norm(g, limit)
    assert clipped is g
    assert reported == pytest.approx(norm, rel=1e-14)


def test_global_norm_does_not_overflow_for_huge_entries() -> None:
    g = RNNParams(U=np.full((2, 3), 1e200), W=np.full((2, 2), 1e200), V=np.full((3, 2), 1e200))
    assert global_norm(g) == pytest.approx(1e200 * math.sqrt(16), rel=1e-14)
    clipped, _ = clip_by_global_norm(g, 1.0)
    assert float(np.linalg.norm(flat(clipped))) == pytest.approx(1.0, rel=1e-14)


def test_nonfinite_gradient_is_reported_not_rescaled_and_optimizers_refuse_it() -> None:
    p = random_params(3)
    U = np.array(p.U)
    U[0, 1] = np.nan
    g = p.replace(U=U)
    clipped, norm = clip_by_global_norm(g, 1.0)
    assert clipped is g and math.isnan(norm)
    for opt in (SGD(lr=0.1, clip=1.0), Adagrad(lr=0.1, clip=1.0)):
        with pytest.raises(FloatingPointError, match="gradient norm is nan"):
            opt.update(p, g, opt.init(p))


@pytest.mark.parametrize("max_norm", [0.0, -1.0, math.nan])
def test_clip_rejects_a_nonpositive_max_norm(max_norm: float) -> None:
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_global_norm(random_params(0), max_norm)


# ---------------------------------------------------------------------------------------------
# Optimizers: one step, exact formulas; pure
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [None, 0.5])
def test_sgd_step_is_theta_minus_lr_times_the_clipped_gradient(clip: float | None) -> None:
    p, g = random_params(10), random_params(11)
    lr = 0.037
    opt = SGD(lr=lr, clip=clip)
    upd = opt.update(p, g, opt.init(p))
    norm = float(np.linalg.norm(flat(g)))
    scale = 1.0 if clip is None else clip / norm  # the gradient norm is > 0.5 here
    assert norm > 0.5
    expected = RNNParams(**{n: a - lr * scale * getattr(g, n) for n, a in p.items()})
    assert_params_close(upd.params, expected)
    assert upd.grad_norm == pytest.approx(norm, rel=1e-14)
    assert upd.clipped == (clip is not None)
    assert upd.state.step == 1


@pytest.mark.parametrize("clip", [None, 0.5])
def test_adagrad_two_steps_follow_the_formula(clip: float | None) -> None:
    p0, g1, g2 = random_params(20), random_params(21), random_params(22)
    lr, eps = 0.1, 1e-8
    opt = Adagrad(lr=lr, clip=clip, eps=eps)
    s0 = opt.init(p0)
    u1 = opt.update(p0, g1, s0)
    u2 = opt.update(u1.params, g2, u1.state)

    def clipped(g: RNNParams) -> dict[str, np.ndarray]:
        n = float(np.linalg.norm(flat(g)))
        f = 1.0 if clip is None or n <= clip else clip / n
        return {k: a * f for k, a in g.items()}

    c1, c2 = clipped(g1), clipped(g2)
    G1 = {k: c1[k] ** 2 for k in c1}  # G_1 = g_1^2
    G2 = {k: G1[k] + c2[k] ** 2 for k in c1}  # G_2 = G_1 + g_2^2
    p1 = {k: a - lr * c1[k] / np.sqrt(G1[k] + eps) for k, a in p0.items()}
    p2 = {k: p1[k] - lr * c2[k] / np.sqrt(G2[k] + eps) for k in p1}
    assert_params_close(u1.params, RNNParams(**p1))
    assert_params_close(u1.state.sum_sq, RNNParams(**G1))
    assert_params_close(u2.params, RNNParams(**p2))
    assert_params_close(u2.state.sum_sq, RNNParams(**G2))
    assert (s0.step, u1.state.step, u2.state.step) == (0, 1, 2)
    # the first Adagrad step moves every entry by lr |g| / sqrt(g^2 + eps): at most lr, and
    # about lr wherever g^2 >> eps, whatever the clipping
    step, g = np.abs(flat(u1.params) - flat(p0)), np.abs(np.concatenate([a.ravel() for a in c1.values()]))
    assert np.all(step <= lr)
    assert_close(step[g > 1e-2], np.full(int(np.sum(g > 1e-2)), lr), name="|step 1|", rtol=1e-4)


def test_optimizer_updates_are_pure() -> None:
    p, g = random_params(30), random_params(31)
    for opt in (SGD(lr=0.1, clip=1.0), Adagrad(lr=0.1, clip=1.0)):
        state = opt.init(p)
        before = [flat(p).copy(), flat(g).copy()]
        a, b = opt.update(p, g, state), opt.update(p, g, state)
        assert np.array_equal(flat(a.params), flat(b.params))  # same inputs, same result
        assert np.array_equal(flat(p), before[0]) and np.array_equal(flat(g), before[1])
        assert state.step == 0


def test_optimizers_reject_bad_hyperparameters_and_mismatched_gradients() -> None:
    for kwargs in ({"lr": 0.0}, {"lr": -1.0}, {"lr": math.inf}, {"lr": 0.1, "clip": 0.0}):
        for cls in (SGD, Adagrad):
            with pytest.raises(ValueError):
                cls(**kwargs)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("adam", lr=0.1, clip=None)
    p = random_params(0)
    opt = SGD(lr=0.1)
    with pytest.raises(ValueError, match="grads"):
        opt.update(p, random_params(0, D=6), opt.init(p))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def test_encode_round_trips() -> None:
    vocab, ids = encode("abracadabra é")
    assert vocab == " abcdré"
    assert "".join(vocab[i] for i in ids) == "abracadabra é"


@pytest.mark.parametrize("optimizer, lr", [("adagrad", 0.1), ("sgd", 0.05)])
def test_training_on_a_repetitive_text_drives_the_loss_far_below_log_K(optimizer: str, lr: float) -> None:
    r = train_char_lm(HELLO, hidden=16, steps=300, seq_len=12, lr=lr, optimizer=optimizer, seed=0)
    assert r.baseline == pytest.approx(math.log(8))
    assert r.losses.shape == r.smoothed.shape == (300,)
    assert np.all(np.isfinite(r.losses))
    assert r.losses[0] > 0.7 * r.baseline  # it starts near the uniform loss...
    assert r.final_smoothed < 0.05 * r.baseline  # ...and ends far below it
    assert not r.losses.flags.writeable


def reference_losses(text: str, p0: RNNParams, opt: SGD | Adagrad, T: int, B: int, steps: int) -> list[float]:
    """The chunking spelled out with one unbatched bptt call per stream.

    Stream b is characters bL..(b+1)L-1 (L = len // B). Step n reads chunk positions
    pos..pos+T-1 of every stream with targets one later, starting from that stream's final
    state of the previous chunk (a constant: the gradient is cut there); when fewer than T+1
    characters remain, pos returns to 0 and every state to zeros. The update uses the gradient
    of the chunk's summed loss divided by B.
    """
    _, ids = encode(text)
    L = len(ids) // B
    p, state, pos = p0, opt.init(p0), 0
    s: list[np.ndarray | None] = [None] * B
    out = []
    for _ in range(steps):
        if pos + T + 1 > L:
            pos, s = 0, [None] * B
        rs = [
            bptt(p, ids[b * L + pos : b * L + pos + T], ids[b * L + pos + 1 : b * L + pos + T + 1], s0=s[b])
            for b in range(B)
        ]
        out.append(sum(r.loss for r in rs) / (B * T))
        grads = RNNParams(**{k: sum(getattr(r.grads, k) for r in rs) / B for k, _ in p.items()})
        upd = opt.update(p, grads, state)
        p, state = upd.params, upd.state
        s = [r.final_state for r in rs]
        pos += T
    return out


@pytest.mark.parametrize("B", [1, 2])
def test_training_carries_the_state_across_chunks_and_resets_it_at_the_end_of_the_text(B: int) -> None:
    text = "the cat sat on the mat. " * B  # 24 characters per stream
    T, steps = 5, 6  # chunks at 0, 5, 10, 15, then back to 0 (20 + 6 > 24), 5
    vocab, ids = encode(text)
    p0 = RNNParams.init(len(vocab), 7, len(vocab), seed=3)
    opt = Adagrad(lr=0.1, clip=5.0)
    r = train_char_lm(text, hidden=7, steps=steps, seq_len=T, lr=0.1, clip=5.0, batch=B, params=p0)
    expected = reference_losses(text, p0, opt, T, B, steps)
    assert_close(r.losses, expected, name="losses", rtol=1e-12, atol=0.0)

    # The carried state matters: chunk 2 (positions 5..9) from zeros instead of chunk 1's
    # final state gives a different loss.
    x1, y1, x2, y2 = ids[0:5], ids[1:6], ids[5:10], ids[6:11]
    final1 = bptt(p0, x1, y1).final_state
    u = opt.update(p0, bptt(p0, x1, y1).grads, opt.init(p0)).params
    carried, fresh = bptt(u, x2, y2, s0=final1).loss / T, bptt(u, x2, y2).loss / T
    assert abs(carried - fresh) > 1e-3
    if B == 1:
        assert r.losses[1] == pytest.approx(carried, rel=1e-12)


def test_a_trained_model_uses_the_carried_state_where_the_next_character_is_ambiguous() -> None:
    # In "hello world " the character after "l" is "l", "o" or "d": only the context says
    # which. Chunks of T = 5 start at every phase of the period 12, so training has to rely
    # on the carried state.
    r = train_char_lm(HELLO, hidden=32, steps=400, seq_len=5, seed=0)
    _, ids = encode(HELLO)
    x, y = ids[3:8], ids[4:9]  # "lo wo" -> "o wor": the chunk starts at the ambiguous "l"
    s = forward(r.params, ids[0:3]).final_state  # the state after "hel"
    carried = bptt(r.params, x, y, s0=s).loss / 5
    fresh = bptt(r.params, x, y).loss / 5
    assert carried < 0.05
    assert fresh > carried + 0.2  # from zeros the model cannot know that "o" follows


def test_sample_is_seeded_and_reproduces_what_the_model_learned() -> None:
    r = train_char_lm(HELLO, hidden=16, steps=300, seq_len=12, seed=0)
    a = sample(r.params, r.vocab, "h", 60, seed=7)
    assert a == sample(r.params, r.vocab, "h", 60, seed=7)
    assert len(a) == 60 and set(a) <= set(r.vocab)
    assert ("h" + a).startswith("hello world hello world")
    assert sample(r.params, r.vocab, "h", 0, seed=7) == ""
    with pytest.raises(ValueError, match="seed_char"):
        sample(r.params, r.vocab, "z", 5, seed=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden": 0}, "hidden"),
        ({"steps": 0}, "steps"),
        ({"seq_len": -1}, "seq_len"),
        ({"batch": 0}, "batch"),
        ({"lr": 0.0}, "lr"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"seq_len": 600}, "too few"),
    ],
)
def test_train_char_lm_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train_char_lm(HELLO, **kwargs)


def test_default_text_ships_with_python() -> None:
    text, source = default_text()
    assert len(text) > 100_000
    assert "pydoc_data" in source or "stdlib" in source


# ---------------------------------------------------------------------------------------------
# run_train, the command
# ---------------------------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="manual-bptt train")
    add_train_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def hello_file(tmp_path: Path) -> Path:
    path = tmp_path / "hello.txt"
    path.write_text(HELLO, encoding="utf-8")
    return path


def test_run_train_writes_the_curve_the_plot_and_a_sample(
    hello_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "nested"
    argv = [
        "--text",
        str(hello_file),
        "--steps",
        "120",
        "--hidden",
        "16",
        "--seq-len",
        "12",
        "--out",
        str(out),
        "--sample-len",
        "40",
        "--print-every",
        "30",
        "--seed",
        "4",
    ]
    assert run_train(parse(argv)) == 0
    png = (out / PNG_NAME).read_bytes()
    assert png[:8] == PNG_SIGNATURE and len(png) > 1000
    curve = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    assert len(curve["loss"]) == len(curve["smoothed_loss"]) == 120
    assert curve["baseline_log_K"] == pytest.approx(math.log(8))
    assert curve["final_smoothed_loss"] < 0.5 * curve["baseline_log_K"]
    assert curve["config"]["optimizer"] == "adagrad" and curve["config"]["seq_len"] == 12
    text = (out / SAMPLE_NAME).read_text(encoding="utf-8")
    assert len(text) == 41 and set(text) <= set(HELLO)
    stdout = capsys.readouterr().out
    assert stdout.count("chars/s") == 4  # steps 30, 60, 90, 120
    assert "uniform baseline log(K) = 2.0794" in stdout
    assert f"final smoothed loss = {curve['final_smoothed_loss']:.4f}" in stdout


def test_run_train_default_text_and_sgd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--steps",
        "3",
        "--hidden",
        "8",
        "--optimizer",
        "sgd",
        "--out",
        str(tmp_path),
        "--sample-len",
        "5",
        "--clip",
        "inf",
    ]
    assert run_train(parse(argv)) == 0
    assert "text: " + default_text()[1] in capsys.readouterr().out
    assert json.loads((tmp_path / JSON_NAME).read_text(encoding="utf-8"))["config"]["clip"] is None


def test_run_train_without_matplotlib_skips_the_plot_only(
    hello_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    argv = [
        "--text",
        str(hello_file),
        "--steps",
        "5",
        "--hidden",
        "4",
        "--out",
        str(tmp_path),
        "--sample-len",
        "5",
    ]
    assert run_train(parse(argv)) == 0
    assert not (tmp_path / PNG_NAME).exists()
    assert (tmp_path / JSON_NAME).exists() and (tmp_path / SAMPLE_NAME).exists()
    assert 'plot skipped (pip install "manual-bptt[plot]")' in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--text", "{tmp}/missing.txt"], "no such file"),
        (["--text", "{tmp}/empty.txt"], "is empty"),
        (["--text", "{tmp}/latin1.txt"], "not UTF-8"),
        (["--text", "{tmp}/hello.txt", "--seq-len", "600"], "too few"),
        (["--text", "{tmp}/hello.txt", "--batch", "60"], "too few"),
        (["--hidden", "0"], "--hidden"),
        (["--steps", "-5"], "--steps"),
        (["--seq-len", "0"], "--seq-len"),
        (["--batch", "0"], "--batch"),
        (["--sample-len", "0"], "--sample-len"),
        (["--print-every", "0"], "--print-every"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--clip", "-1"], "--clip"),
        (["--out", "{tmp}/hello.txt"], "not a directory"),
    ],
)
def test_run_train_bad_arguments_return_2_with_a_message(
    argv: list[str], match: str, hello_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = hello_file.parent
    (tmp / "empty.txt").write_text("", encoding="utf-8")
    (tmp / "latin1.txt").write_bytes("café".encode("latin-1"))
    argv = [a.format(tmp=tmp) for a in argv]
    if "--text" not in argv:
        argv += ["--text", str(hello_file)]
    if "--out" not in argv:
        argv += ["--out", str(tmp / "out")]
    assert run_train(parse([*argv, "--steps", "2"] if "--steps" not in argv else argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("manual-bptt train: error: ") and match in err
    assert not (tmp / "out").exists()


def test_training_never_imports_torch(hello_file: Path, tmp_path: Path) -> None:
    src = str(Path(bptt_train.__file__).resolve().parent.parent)
    code = (
        "import argparse, sys\n"
        "from bptt_train.cli import add_train_arguments, run_train\n"
        "p = argparse.ArgumentParser(); add_train_arguments(p)\n"
        f"rc = run_train(p.parse_args(['--text', {str(hello_file)!r}, '--steps', '3', '--hidden', '4',"
        f" '--sample-len', '3', '--out', {str(tmp_path / 'o')!r}]))\n"
        "assert rc == 0, rc\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------
# Interruption (Ctrl-C): stop cleanly, keep what was done
# ---------------------------------------------------------------------------------------------
def interrupt_at(step: int):
    """A training callback that raises KeyboardInterrupt after ``step`` steps, as Ctrl-C would."""

    def callback(pr) -> None:
        if pr.step == step:
            raise KeyboardInterrupt

    return callback


def test_an_interrupted_training_carries_the_steps_done_and_their_parameters() -> None:
    kwargs = {"hidden": 6, "seq_len": 7, "lr": 0.1, "seed": 2}
    with pytest.raises(TrainingInterrupted) as info:
        train_char_lm(HELLO, steps=50, callback=interrupt_at(3), **kwargs)
    assert isinstance(info.value, KeyboardInterrupt)
    partial = info.value.result
    assert partial is not None and partial.interrupted and partial.steps_done == 3
    assert info.value.steps == 50 and "after 3 of 50 steps" in str(info.value)
    three = train_char_lm(HELLO, steps=3, **kwargs)
    assert not three.interrupted and three.steps_done == 3
    np.testing.assert_array_equal(partial.losses, three.losses)
    np.testing.assert_array_equal(partial.smoothed, three.smoothed)
    assert_params_close(partial.params, three.params, rtol=0.0)


def test_an_interruption_before_the_first_step_carries_no_result(monkeypatch: pytest.MonkeyPatch) -> None:
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bptt_train.loop, "bptt", ctrl_c)
    with pytest.raises(TrainingInterrupted) as info:
        train_char_lm(HELLO, steps=5, hidden=4, seq_len=6)
    assert info.value.result is None and "after 0 of 5 steps" in str(info.value)


def test_run_train_interrupted_writes_what_it_has_and_says_so_in_one_line(
    hello_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bptt_train.cli, "_progress_printer", lambda every: interrupt_at(4))
    out = tmp_path / "out"
    argv = ["--text", str(hello_file), "--steps", "50", "--hidden", "5", "--seq-len", "6",
            "--sample-len", "7", "--out", str(out)]  # fmt: skip
    assert run_train(parse(argv)) == EXIT_INTERRUPTED == 130
    captured = capsys.readouterr()
    assert captured.err == "manual-bptt train: interrupted at step 4 of 50; writing the results so far\n"
    curve = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    assert curve["interrupted"] is True and curve["steps_done"] == 4 and curve["config"]["steps"] == 50
    assert len(curve["loss"]) == len(curve["smoothed_loss"]) == 4
    assert len((out / SAMPLE_NAME).read_text(encoding="utf-8")) == 8
    assert (out / PNG_NAME).read_bytes()[:8] == PNG_SIGNATURE
    assert "4 steps in" in captured.out


def test_run_train_completed_says_not_interrupted(hello_file: Path, tmp_path: Path) -> None:
    argv = ["--text", str(hello_file), "--steps", "3", "--hidden", "4", "--sample-len", "2",
            "--out", str(tmp_path)]  # fmt: skip
    assert run_train(parse(argv)) == 0
    curve = json.loads((tmp_path / JSON_NAME).read_text(encoding="utf-8"))
    assert curve["interrupted"] is False and curve["steps_done"] == 3


def test_run_train_interrupted_before_training_writes_nothing_and_prints_one_line(
    hello_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_c(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(bptt_train.cli, "_load_text", ctrl_c)
    out = tmp_path / "out"
    assert run_train(parse(["--text", str(hello_file), "--out", str(out)])) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "manual-bptt train: interrupted; nothing more written\n"
    assert not out.exists()
