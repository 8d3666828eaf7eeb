"""Retraining against fooling images: an extra "fooling" class and repeated evolution.

One round: evolve fooling images against the current net (MAP-Elites over the ``K`` real
classes, several seeds), add the elites to the training set as class ``K`` (``"fooling"``),
train the ``K + 1``-class net, evaluate it on the real test set, and evolve again against
it. The archive of the retrained net still has ``K`` cells: the probability of the fooling
class is simply not a cell, so an image fools only if the net gives a real class >= the
threshold.

Scaled-down procedure (see ``docs/fooling.md``): the fooling class is filled to
``fooling_examples`` training images by cycling through all elites collected so far, and
each round fine-tunes the previous net for ``epochs`` epochs (the first ``K + 1``-class net
starts from the given ``K``-class net, its new output row initialised to zero) instead of
training from scratch.

Usage: ``python -m onepixel_jax.fooling.retrain --rounds 3 --out runs/retrain``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from onepixel_jax.fooling.run import FoolConfig, run_fooling


def extend_head(variables: dict, extra: int = 1) -> dict:
    """Copy of ``variables`` whose last Dense layer has ``extra`` more (zero) outputs."""
    params = jax.tree_util.tree_map(lambda a: a, dict(variables["params"]))
    dense = [k for k in params if k.startswith("Dense_")]
    if not dense:
        raise ValueError("variables must hold a Dense_<i> output layer in 'params'")
    last = max(dense, key=lambda k: int(k.split("_")[1]))
    kernel, bias = params[last]["kernel"], params[last]["bias"]
    params[last] = {
        "kernel": jnp.concatenate([kernel, jnp.zeros((kernel.shape[0], extra))], axis=1),
        "bias": jnp.concatenate([bias, jnp.zeros((extra,))]),
    }
    return {**variables, "params": params}


def train_epochs(model, variables, images, labels, epochs, key, batch_size=128, lr=0.01):
    """SGD with momentum on uint8 ``images`` ``(N, H, W, C)``; returns new variables."""
    tx = optax.sgd(lr, momentum=0.9)
    params = variables["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = model.apply({"params": p}, x, train=False)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    n = images.shape[0]
    for epoch in range(epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        for start in range(0, n - batch_size + 1, batch_size):
            idx = perm[start : start + batch_size]
            x = jnp.asarray(images[idx], jnp.float32)
            params, opt_state, _ = step(params, opt_state, x, jnp.asarray(labels[idx]))
    return {**variables, "params": params}


def accuracy(model, variables, images, labels, batch_size=1000) -> float:
    apply = jax.jit(lambda x: jnp.argmax(model.apply(variables, x, train=False), axis=-1))
    hits = 0
    for start in range(0, images.shape[0], batch_size):
        pred = np.asarray(apply(jnp.asarray(images[start : start + batch_size], jnp.float32)))
        hits += int(np.sum(pred == labels[start : start + batch_size]))
    return hits / images.shape[0]


def main(argv: list[str] | None = None) -> int:
    from onepixel_jax import data, models

    p = argparse.ArgumentParser(description="Retraining rounds with a fooling class.")
    p.add_argument("--model", default="lenet-mnist")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs-per-round", type=int, default=5, help="MAP-Elites seeds per round")
    p.add_argument("--generations", type=int, default=300)
    p.add_argument("--popsize", type=int, default=100)
    p.add_argument("--encoding", default="direct")
    p.add_argument("--fooling-examples", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    for name in ("rounds", "runs_per_round", "generations", "popsize", "epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _, card = models.load(args.model)
    directory = models.models_dir() / args.model
    from flax import serialization

    variables = serialization.msgpack_restore((directory / models.CHECKPOINT_FILE).read_bytes())
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), variables)
    num_classes = int(card["num_classes"])
    class_names = list(card["class_names"])
    shape = tuple(card["input_shape"])
    x_train, y_train, _ = data.load(args.dataset, "train")
    x_test, y_test, _ = data.load(args.dataset, "test")
    model = models.model_from_card(card)
    model11 = models.create(card["architecture"], **{**card["model_kwargs"], "num_classes": 11})
    key = jax.random.PRNGKey(0)
    collected: list[np.ndarray] = []
    log_path = out / "rounds.jsonl"

    current_model, current_vars = model, variables
    for rnd in range(args.rounds + 1):
        start = time.perf_counter()
        acc = accuracy(current_model, current_vars, x_test, y_test)

        def predict_fn(x, m=current_model, v=current_vars):
            return jax.nn.softmax(m.apply(v, jnp.asarray(x, jnp.float32), train=False), axis=-1)

        reached, gens_all = [], []
        for seed in range(args.runs_per_round):
            config = FoolConfig(
                model=f"{args.model}-round{rnd}",
                encoding=args.encoding,
                popsize=args.popsize,
                seed=seed,
                chunk=50,
            )
            summary = run_fooling(
                config,
                predict_fn,
                shape,
                class_names,
                out / f"round{rnd}" / f"seed{seed}",
                args.generations,
                stop_at_threshold=True,
                log=lambda s: None,
            )
            reached.append(summary["reached"])
            gens_all.append(summary["generation_all_reached"])
            collected.append(np.load(out / f"round{rnd}" / f"seed{seed}" / "best_images_uint8.npy"))
        record = {
            "round": rnd,
            "classes": "10" if rnd == 0 else "10 + fooling",
            "test_accuracy": acc,
            "fooling_images_in_training": 0
            if rnd == 0
            else int(sum(len(c) for c in collected[: -args.runs_per_round])),
            "reached_per_run": reached,
            "generation_all_reached_per_run": gens_all,
            "evolution_generations_budget": args.generations,
        }
        if rnd == args.rounds:
            record["wall_time_s"] = round(time.perf_counter() - start, 1)
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
            break
        # Retrain with every fooling image collected so far as class K.
        fool = np.concatenate(collected)
        reps = np.resize(np.arange(len(fool)), args.fooling_examples)
        xs = np.concatenate([x_train, fool[reps].reshape(-1, *shape)])
        ys = np.concatenate([y_train, np.full(len(reps), num_classes, y_train.dtype)])
        if rnd == 0:
            current_vars = extend_head(current_vars)
            current_model = model11
        current_vars = train_epochs(
            current_model, current_vars, xs, ys, args.epochs, jax.random.fold_in(key, rnd)
        )
        record["wall_time_s"] = round(time.perf_counter() - start, 1)
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
