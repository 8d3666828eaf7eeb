"""The corner table: every (pixel, corner) of some images evaluated once, checked against the
plain forward pass, and replays whose figures follow from the table."""

import json

import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import corner_table
from onepixel_jax.perturb import apply_pixels_np


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = tmp_path_factory.mktemp("corner") / "digits.npz"
    corner_table.build("digits-cnn", 6, out, log=lambda _: None)
    return out


def test_table_holds_the_forward_pass_of_every_corner_pixel(table):
    predict_fn, _ = opj.models.load("digits-cnn")
    with np.load(table) as data:
        probs, images, labels, idx = data["probs"], data["images"], data["labels"], data["idx"]
        assert int(data["done"]) == 6
    x, y, _ = opj.data.load("digits", "test")
    np.testing.assert_array_equal(images, x[idx])
    np.testing.assert_array_equal(labels, y[idx])
    assert probs.shape == (6, 64, 2, 10)
    for i in (0, 5):
        batch = np.stack(
            [
                apply_pixels_np(images[i], [[p // 8, p % 8, 255 * k]])
                for p in range(64)
                for k in range(2)
            ]
        ).astype(np.float32)
        ref = np.asarray(predict_fn(batch)).reshape(64, 2, 10)
        np.testing.assert_allclose(probs[i].astype(np.float32), ref, atol=2e-3)  # float16


def test_replay_figures_follow_from_the_table(table, tmp_path):
    out = tmp_path / "replay.json"
    text = corner_table.replay(table, popsize=8, stalls=(0, 2), json_out=out)
    rec = json.loads(out.read_text())
    with np.load(table) as data:
        fooled = data["probs"].astype(np.float32).argmax(-1) != data["labels"][:, None, None]
    can = fooled.any((1, 2))
    assert rec["fooled_by_some_corner"] == int(can.sum())
    for order in corner_table.ORDERS:
        o = rec["orders"][order]
        # 128 candidates fit the budget: every corner-vulnerable image is found, no other
        assert o["success"] == can.tolist()
        assert o["successes"] == int(can.sum()) == o["success_at"]["8192"]
        q = np.array(o["queries"])
        assert np.all(q[can] <= 128) and np.all(q % 8 == 0)
        assert np.all(q[~can] == rec["budget"])
        assert f"| {order} | {int(can.sum())}/6 |" in text
    off = [r for r in rec["stall"] if r["stall"] == 0]
    assert [r["successes"] for r in off] == [int(can.sum())] * 2
    # a stall rule can only lose successes and save queries
    for order in corner_table.ORDERS:
        rows = {r["stall"]: r for r in rec["stall"] if r["order"] == order}
        assert rows[2]["successes"] <= rows[0]["successes"]
        assert rows[2]["total_queries"] <= rows[0]["total_queries"]


def test_build_resumes_and_refuses_other_images(table, tmp_path):
    copy = tmp_path / "t.npz"
    copy.write_bytes(table.read_bytes())
    corner_table.build("digits-cnn", 6, copy, log=lambda _: None)  # nothing left to do
    assert copy.read_bytes() == table.read_bytes()
    with pytest.raises(UsageError, match="other images"):
        corner_table.build("digits-cnn", 7, copy, log=lambda _: None)
