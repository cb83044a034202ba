"""An online data policy's session: it decides what each micro-batch holds (generating from
the current student or the teacher), hears of each update, adds its scalars to the log and its
generation cost to the outcome."""
from __future__ import annotations

from arkd_bench.train.hooks.base import StepState, TrainingHook

# what a resumed session must continue from (`_calls` seeds its next generation)
SESSION_COUNTERS = ("step", "generation_seconds", "generated_sequences", "generated_tokens", "_calls")


def data_session(distiller, acc):
    """The session an online data policy works in, or None (its batches are the loader's)."""
    if distiller.data_policy is None or not distiller.data_policy.online:
        return None
    from arkd_bench.data_policy.session import DataSession

    return DataSession(policy=distiller.data_policy, student=lambda: acc.unwrap_model(distiller.student),
                       tokenizer=distiller.tokenizer, max_length=distiller.train.max_length, device=acc.device,
                       seed=distiller.seed, total_steps=distiller.train.steps, probe_items=distiller.probe_items)


class OnlineData(TrainingHook):
    """Comes first: the other hooks see the micro-batches the session made."""

    def __init__(self, session) -> None:
        self.session = session

    def on_step_begin(self, loop, state: StepState) -> None:
        from arkd_bench.train.sharding import full_parameters

        # a sharded student's rollouts run with its parameters gathered, however long each process's are
        with full_parameters(loop.student):
            state.micro_batches = [self.session.next_batch(batch, state.step) for batch in state.micro_batches]

    def on_optimizer_step(self, loop, state: StepState) -> None:
        self.session.after_step(state.step)

    def on_log(self, loop, state: StepState, record) -> None:
        record.update(self.session.log_scalars())

    def on_train_end(self, loop) -> None:
        loop.outcome.data = self.session.summary()

    def state_dict(self):
        """The session's counters (its sampling seeds follow the call count) and the policy's
        state: its `state_dict()` where it has one, else its attributes (RNGs, buffers)."""
        session, policy = self.session, self.session.policy
        counters = {k: getattr(session, k) for k in SESSION_COUNTERS}
        saved = policy.state_dict() if hasattr(policy, "state_dict") else dict(vars(policy))
        return {"session": counters, "policy": saved}

    def load_state_dict(self, state) -> None:
        for key, value in state["session"].items():
            setattr(self.session, key, value)
        policy = self.session.policy
        if hasattr(policy, "load_state_dict"):
            policy.load_state_dict(state["policy"])
        else:
            vars(policy).update(state["policy"])
