"""Progress in logs: common.progress.ProgressLog on a fake clock, and every command's bar off a terminal."""

import re

from common.progress import ProgressLog, format_seconds
from tests.helpers import invoke, write_ag_news_folder


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_log(interval_seconds=15.0):
    clock, lines = FakeClock(), []
    return ProgressLog(lines.append, "sent", interval_seconds, clock), clock, lines


def test_a_line_at_start_then_at_most_one_per_interval_then_at_the_end():
    log, clock, lines = make_log()
    log("embed train", 0, 1000)
    assert lines == ["embed train: 0/1,000 sent (0%), - sent/s, 0s elapsed, ETA -"]
    for step in range(1, 40):  # a report each second: a line only when 15 s have passed since the last
        clock.now += 1
        log("embed train", step * 10, 1000, loss=0.5)
    assert len(lines) == 1 + 39 // 15
    assert lines[1] == "embed train: 150/1,000 sent (15%), 10.0 sent/s, 15s elapsed, ETA 1m25s, loss=0.5"
    clock.now += 1
    log("embed train", 1000, 1000)
    assert lines[-1].endswith("1,000/1,000 sent (100%), 25.0 sent/s, 40s elapsed, done")
    log("embed train", 1000, 1000)  # a repeated final report is not a second end
    assert len(lines) == 4


def test_each_phase_change_gets_a_line_and_a_rerun_task_starts_afresh():
    log, clock, lines = make_log()
    log("head: linear probe", 0, 80)
    clock.now += 2
    log("head: linear probe", 80, 80, train_acc=0.75)
    log("finetune", 0, 720)
    clock.now += 1
    log("finetune", 8, 720)  # within the interval: no line
    assert [line.split(":")[0] for line in lines] == ["head", "head", "finetune"]
    assert lines[1].endswith("done, train_acc=0.75")
    log("head: linear probe", 0, 80)  # the same task name again from 0: a new start
    assert lines[-1].startswith("head: linear probe: 0/80")


def test_a_value_not_measured_yet_reads_as_a_dash_not_nan():
    # the loop reports val_acc=nan until its first validation: a log shows "-" as for the rate and ETA
    log, clock, lines = make_log()
    log("finetune", 0, 100, loss=0.5, val_acc=float("nan"))
    clock.now += 1
    log("finetune", 100, 100, loss=float("nan"), val_acc=0.75)
    assert lines[0].endswith("ETA -, loss=0.5, val_acc=-") and "nan" not in lines[0]
    assert lines[1].endswith("done, loss=-, val_acc=0.75")


def test_the_rate_leaves_out_resumed_work():
    log, clock, lines = make_log()
    log("embed train", 600, 1000)  # 600 rows came from kept shards
    clock.now += 20
    log("embed train", 800, 1000)
    assert "10.0 sent/s" in lines[-1] and "ETA 20s" in lines[-1]


def test_the_timer_writes_on_time_between_rare_reports_and_stays_quiet_after_the_end():
    log, clock, lines = make_log(interval_seconds=10)
    log.tick()  # nothing reported yet: nothing to say
    assert lines == []
    log("epoch 1", 0, 3)
    clock.now += 9
    log.tick()
    assert len(lines) == 1
    clock.now += 1
    log.tick()
    assert len(lines) == 2 and "10s elapsed" in lines[-1]
    log("epoch 1", 3, 3)
    clock.now += 60
    log.tick()
    assert len(lines) == 3 and lines[-1].endswith("done")


def test_durations_read_at_a_glance():
    assert [format_seconds(s) for s in (0, 9.4, 59.6, 108, 3599, 7380)] == [
        "0s",
        "9s",
        "1m00s",
        "1m48s",
        "59m59s",
        "2h03m",
    ]


def test_a_command_whose_stderr_is_a_log_prints_plain_progress_lines(tiny_bert, tmp_path):
    data = write_ag_news_folder(tmp_path / "ag")
    result = invoke("embed", "--model", tiny_bert, "--dataset", data, "--out", tmp_path / "s.h5", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    for split, n in (("train", 24), ("test", 12)):
        line = next(line for line in result.stderr.splitlines() if f"{n}/{n} sent" in line)
        assert split in line and re.search(r"sent/s, \d+s elapsed, done$", line), line
    assert "\x1b[" not in result.stderr and "━" not in result.stderr  # no escape codes, no bar
