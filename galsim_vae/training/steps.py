"""The compiled train and validation steps of one model, optimizer and
``tf.distribute`` strategy, and one pass over a data set.

The loss and gradients are computed per replica (``strategy.run``), the per-galaxy sums
are reduced over replicas, and the validation pass gathers each galaxy's loss for the
median monitor.  Each step's posterior sample uses a stateless seed made of the run seed
and the global step, so a resumed run draws the numbers an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..io_utils import progress

#: Per-galaxy (B,) outputs of ``compute_losses`` (not averaged into the epoch means).
GALAXY_LOSSES = ("galaxy_loss", "galaxy_kl")


class TrainSteps:
    """The compiled train and validation steps of one model/optimizer/strategy."""

    def __init__(self, model, optimizer, strategy, *, xla: bool, mixed_precision: bool):
        import tensorflow as tf

        self.strategy = strategy
        replicas = strategy.num_replicas_in_sync
        variables = model.trainable_variables

        @tf.function(jit_compile=bool(xla), reduce_retracing=True)
        def gradients(batch, beta, seed):
            with tf.GradientTape() as tape:
                losses = model.compute_losses(batch, beta, training=True, seed=seed)
                loss = losses["loss"] / replicas
                if mixed_precision:
                    loss = optimizer.scale_loss(loss)
            return losses, tape.gradient(loss, variables)

        def replica_train(batch, beta, seed):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            losses, grads = gradients(batch, beta, seed + tf.stack([0, 7919 * replica]))
            optimizer.apply(grads, variables)
            return self._sums(losses, batch)

        def replica_eval(batch, beta, seed):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            losses = model.compute_losses(batch, beta, training=False,
                                          seed=seed + tf.stack([0, 7919 * replica]),
                                          per_galaxy=True)
            per_galaxy = {k: tf.cast(losses[k], tf.float64) for k in GALAXY_LOSSES}
            return self._sums(losses, batch), per_galaxy

        @tf.function(reduce_retracing=True)
        def train_step(batch, beta, seed):
            return self._reduce(strategy.run(replica_train, args=(batch, beta, seed)))

        @tf.function(reduce_retracing=True)
        def eval_step(batch, beta, seed):
            sums, per_galaxy = strategy.run(replica_eval, args=(batch, beta, seed))
            return self._reduce(sums), {k: strategy.gather(v, axis=0)
                                        for k, v in per_galaxy.items()}

        self.train_step = train_step
        self.eval_step = eval_step

    @staticmethod
    def _sums(losses: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Any]:
        import tensorflow as tf

        count = tf.cast(tf.shape(batch["image"])[0], tf.float64)
        out = {k: tf.cast(v, tf.float64) * count for k, v in losses.items()
               if k not in GALAXY_LOSSES}
        out["count"] = count
        return out

    def _reduce(self, per_replica: Mapping[str, Any]) -> dict[str, Any]:
        import tensorflow as tf

        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    def run_epoch(self, dataset, beta: float, seed: int, step0: int, *, train: bool,
                  total: int | None, desc: str,
                  per_galaxy: dict[str, list] | None = None) -> tuple[dict[str, float], int]:
        """Run the steps over ``dataset`` (distributed by the strategy); returns the means
        per galaxy and the step count.

        In evaluation (``train=False``), each galaxy's values of :data:`GALAXY_LOSSES` are
        appended to the lists of ``per_galaxy`` when it is given."""
        import tensorflow as tf

        step_fn = self.train_step if train else self.eval_step
        beta_t = tf.constant(beta, tf.float32)
        sums: dict[str, float] = {}
        steps = 0
        bar = progress(dataset, total=total, desc=desc)
        for batch in bar:
            # stateless seed (run seed, global step): the same numbers after a resume
            seed_t = tf.constant([seed % (2**31 - 1), (step0 + steps) % (2**31 - 1)], tf.int32)
            out = step_fn(batch, beta_t, seed_t)
            if not train:
                out, vectors = out
                if per_galaxy is not None:
                    for key, value in vectors.items():
                        per_galaxy.setdefault(key, []).append(value.numpy())
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            steps += 1
            if train and hasattr(bar, "set_postfix") and steps % 10 == 0:
                bar.set_postfix(loss=f"{sums['loss'] / sums['count']:.4g}", refresh=False)
        if not sums or sums["count"] == 0:
            return {}, steps
        count = sums.pop("count")
        return {k: v / count for k, v in sums.items()}, steps
