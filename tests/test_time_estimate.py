"""`TimeEstimateCallback`: the work announced up front, the measured speed and the time left after a few steps."""

from __future__ import annotations

import re

from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_bpt3c.training.callbacks import TimeEstimateCallback


def test_announces_the_work_then_measures_speed_and_time_left(tmp_path, capsys, monkeypatch):
    args, control = TrainingArguments(output_dir=str(tmp_path)), TrainerControl()
    state = TrainerState(max_steps=110, global_step=10)  # resumed at step 10
    monkeypatch.setattr("hf_bpt3c.training.callbacks.time.perf_counter", lambda: float(state.global_step))  # 1 s/step
    callback = TimeEstimateCallback(tokens_per_step=2304, what="language model", measure_steps=4)
    callback.on_train_begin(args, state, control)
    assert "language model: 100 steps of 2,304 tokens to go (0.23M tokens)" in capsys.readouterr().out
    for step in range(11, 17):  # the first step is untimed, then 4 timed ones
        state.global_step = step
        callback.on_step_end(args, state, control)
    out = capsys.readouterr().out
    assert callback.tokens_per_second == 2304  # 4 steps of 2,304 tokens in 4 s
    minutes = float(re.search(r"about (\d+) min left", out).group(1))
    assert minutes == round((110 - 15) / 60) and "step 15 of 110" in out  # 95 steps at 1 s each
    state.global_step = 20
    callback.on_step_end(args, state, control)
    assert capsys.readouterr().out == ""  # said once
