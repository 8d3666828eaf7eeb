"""The L0 ladder: records per step, images fooled at a smaller d carried over, the larger d
starting from the smaller d's pixels, resume and growth, the report, the protocols and the
malformed --pixels lists."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import l0, methods, run_folder

H = W = 5
NEEDED = 3  # white pixels the model needs to change its mind


def white_count_model(x):
    """Class 1 wins once at least ``NEEDED`` pixels are (nearly) white; the more white pixels,
    the lower p(class 0), so every white pixel is progress."""
    white = jax.nn.sigmoid((jnp.min(x, axis=-1) - 230.0) / 4.0).sum(axis=(1, 2))
    logits = jnp.stack([jnp.full_like(white, 2.0 * NEEDED - 1.0), 2.0 * white], -1)
    return jax.nn.softmax(logits, -1)


def dataset(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 200, (n, H, W, 3)).astype(np.uint8), np.zeros(n, np.int64)


if "fast-tiny" not in methods.PRESETS:
    methods.register(methods.MethodPreset("fast-tiny", "fast", popsize=16, max_iters=60))


def config(**kw):
    base = dict(model="white", dataset="toy", n_images=4, pixels=(1, 2, 3, 4), method="fast-tiny",
                chunk_size=3)  # fmt: skip
    return l0.L0Config(**{**base, **kw})


@pytest.mark.parametrize(
    "text,error",
    [("0", ">= 1"), ("1,,3", "empty item"), ("3,2", "grow strictly"), ("2,2", "grow strictly"),
     ("a", "integers"), ("5,", "empty item"), ("", "no value"), ("1,-2", "integers")],
)  # fmt: skip
def test_malformed_pixel_lists_are_refused(text, error):
    with pytest.raises(ValueError, match=error):
        l0.parse_pixels(text)


def test_pixel_lists_parse():
    assert l0.parse_pixels("3") == 3
    assert l0.parse_pixels("1,2,3,5,10,20") == (1, 2, 3, 5, 10, 20)
    assert l0.parse_pixels(" 1, 4 ") == (1, 4)
    with pytest.raises(l0.L0SettingError, match="exceeds the 5x5 image"):
        l0.check_ladder((1, 26), 5, 5)


def test_the_ladder_records_carry_and_resume(tmp_path):
    x, y = dataset()
    out = tmp_path / "ladder"
    res = l0.run_l0(config(), out, white_count_model, x, y)
    info, recs = run_folder.load_run(out)
    by = {(r["method"], r["index"]): r for r in recs}
    assert len(recs) == 4 * 4 and res.attacks_run + res.carried == 16
    for index in info["indices"]:
        steps = [by[(f"fast-tiny d={d}", index)] for d in (1, 2, 3, 4)]
        # fooled at d => fooled at every larger d, carried without a query
        fooled = [s["success"] for s in steps]
        assert fooled == sorted(fooled)
        assert not fooled[0] and fooled[-1]  # one white pixel is not enough; four are
        first = fooled.index(True)
        for later in steps[first + 1 :]:
            assert later["queries"] == 0 and later["fooled_at"] == steps[first]["d"]
            assert later["pixels"] == steps[first]["pixels"]
        # a larger d starts from the smaller d's pixels: they are kept, d in all
        for prev, cur in zip(steps[:first], steps[1 : first + 1], strict=False):
            assert cur["pixels"][: len(prev["pixels"])] == prev["pixels"]
            assert len(cur["pixels"]) == cur["d"]
            assert cur["queries_total"] == prev["queries_total"] + cur["queries"]
        # the recorded pixels fool the model when applied to the clean image
        adv = l0.apply_tuples(x[index], steps[first]["pixels"])
        assert int(np.argmax(white_count_model(jnp.asarray(adv[None], jnp.float32))[0])) == 1
        assert steps[first]["l0"] <= steps[first]["d"]
    # resume: nothing to do; after losing the last records, the same records again
    again = l0.run_l0(config(), out, white_count_model, x, y)
    assert again.attacks_run == 0 and again.carried == 0 and again.reused == 16
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:-3]) + "\n")
    l0.run_l0(config(), out, white_count_model, x, y)
    redone = (out / "results.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
    assert [strip(a) for a in redone] == [strip(b) for b in lines]
    # growth: two more images, the first four untouched
    grown = l0.run_l0(config(n_images=6), out, white_count_model, x, y)
    assert grown.reused == 16 and grown.attacks_run + grown.carried == 8
    assert "--n-images 6 " in json.loads((out / "run.json").read_text())["command"]
    # another ladder in the same folder is refused
    with pytest.raises(UsageError, match="other settings"):
        l0.run_l0(config(pixels=(1, 3)), out, white_count_model, x, y)
    # the report: a table and a figure, robust accuracy falling with d
    rows = l0.write_l0_report(out)
    assert [r["d"] for r in rows] == [1, 2, 3, 4] and rows[-1]["robust"] == 0.0
    assert rows[0]["robust"] == 1.0 and all(r["images"] == 6 for r in rows)
    assert (out / l0.TABLE).read_text().count("\n| ") == 5 and (out / l0.FIGURE).stat().st_size


def test_steps_larger_than_the_image_are_refused(tmp_path):
    x, y = dataset()
    with pytest.raises(l0.L0SettingError, match="exceeds the 5x5 image"):
        l0.run_l0(config(pixels=(1, 26)), tmp_path / "big", white_count_model, x, y)
    assert not (tmp_path / "big").exists()


def test_the_sparse_k20_protocol_budget():
    p = l0.protocol("sparse-k20")
    assert p.pixels == (20,) and p.budget == 10_000
    cfg = p.config(model="m", dataset="d").attack_config(20)
    assert cfg.strategy == "sparse-rs" and cfg.popsize == 1 and cfg.budget == 10_000
    assert dict(cfg.options).get("chains") is None  # one chain: popsize 1
    with pytest.raises(UsageError, match="unknown L0 protocol"):
        l0.protocol("nope")


@pytest.mark.parametrize(
    "pixels,expected",
    [("0", "--pixels: must be at least 1"), ("1,,3", "--pixels: has an empty item"),
     ("3,2", "--pixels: must grow strictly"), ("1,65", "--pixels 65 exceeds the 8x8 image")],
)  # fmt: skip
def test_malformed_ladders_on_the_command_line(tmp_path, capsys, pixels, expected):
    from onepixel_jax.cli import main

    out = tmp_path / "run"
    argv = ["attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", "2",
            "--strategy", "fast", "--pixels", pixels, "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_ladder_flags_that_do_not_apply_are_refused(tmp_path, capsys):
    from onepixel_jax.cli import main

    base = ["attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", "2",
            "--quiet", "--out", str(tmp_path / "run")]  # fmt: skip
    for extra, expected in (
        (["--pixels", "1,2", "--baseline", "random"], "--baseline does not apply"),
        (["--pixels", "1,2", "--popsize", "8"], "--popsize does not apply"),
        (["--protocol", "sparse-k20", "--pixels", "3"], "--pixels cannot be combined"),
        (["--protocol", "nope"], "--protocol: must be one of sparse-k20"),
    ):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


def test_a_ladder_from_the_command_line_resumes_and_reports(tmp_path, capsys):
    from onepixel_jax.cli import main

    out = tmp_path / "ladder"
    argv = ["attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", "3",
            "--pixels", "1,2", "--strategy", "sparse-rs", "--max-queries", "200",
            "--chunk-size", "3", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "robust accuracy d=1:" in capsys.readouterr().out
    info, recs = run_folder.load_run(out)
    assert info["l0"]["pixels"] == [1, 2] and len(recs) == 6
    assert all(r["queries"] <= 200 for r in recs)
    assert main(argv) == 0  # resumed: nothing left to attack
    assert len((out / "results.jsonl").read_text().splitlines()) == 6
    (out / l0.TABLE).unlink()
    assert main(["report", str(out)]) == 0
    assert (out / l0.TABLE).exists() and (out / l0.FIGURE).exists()


class Engine:
    """The ladder's engine with ``count`` passed on (or not) and the model evaluations summed;
    each slot runs in its own model call, so idle slots cost nothing."""

    def __init__(self, use_count: bool):
        self.use_count, self.evaluations, self.counts = use_count, 0, []

    def __call__(self, predict_fn, images, labels, targets, keys, cfg, count=None):
        import dataclasses

        from onepixel_jax import runner

        self.counts.append(count)
        res = runner.attack(
            keys[0], predict_fn, images, labels, dataclasses.replace(cfg, call_size=cfg.popsize),
            targets, progress=False, image_keys=keys, count=count if self.use_count else None,
        )  # fmt: skip
        self.evaluations += res.model_evaluations
        return res


def test_the_ladder_spends_no_model_call_on_padding(tmp_path):
    """Later steps attack only the images not yet fooled, padded to the chunk: with ``count``
    the padding is never started, and the records are those of attacking the copies too."""
    x, y = dataset()
    aware, copies = Engine(True), Engine(False)
    l0.run_l0(config(), tmp_path / "aware", white_count_model, x, y, attack_fn=aware)
    l0.run_l0(config(), tmp_path / "copies", white_count_model, x, y, attack_fn=copies)
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    recs = run_folder.load_run(tmp_path / "aware")[1]
    assert [strip(r) for r in recs] == [
        strip(r) for r in run_folder.load_run(tmp_path / "copies")[1]
    ]
    assert any(c is not None for c in aware.counts)  # some call was padded
    assert aware.evaluations == sum(r["queries"] for r in recs) < copies.evaluations
