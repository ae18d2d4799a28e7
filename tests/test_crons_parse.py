"""The crontab parser (worker_admin/crontab.py): graphile-worker's line format, its options and
payloads, the reason for each line it refuses, and no exception on any input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker_admin.crontab import CronOptions, load_crontab, parse_crontab

NOW = datetime(2026, 12, 5, 8, 7, 30, tzinfo=UTC)


def one(line: str):
    crontab = parse_crontab(line)
    assert not crontab.problems, crontab.problems
    (item,) = crontab.items
    return item


def reason(line: str) -> str:
    crontab = parse_crontab(line)
    assert not crontab.items
    (bad,) = crontab.problems
    return bad.reason


def test_a_plain_line():
    item = one("0 4 * * * send_digest")
    assert (item.task, item.identifier, item.payload) == ("send_digest", "send_digest", None)
    assert item.options == CronOptions()
    assert item.words() == "At 04:00"
    assert item.previous_due(NOW) == datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
    assert item.next_due(NOW) == datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


def test_every_option():
    item = one(
        "*/15 8-18 * * 1-5 report ?id=office_hours&fill=1d6h&max=5&queue=reports:eu"
        "&priority=-10&jobKey=report%20key&jobKeyMode=preserve_run_at {team: 'ops', n: [1, 2]}"
    )
    assert item.identifier == "office_hours" and item.task == "report"
    assert item.options == CronOptions(
        fill=timedelta(days=1, hours=6),
        max_attempts=5,
        queue="reports:eu",
        priority=-10,
        job_key="report key",
        job_key_mode="preserve_run_at",
    )
    assert item.payload == {"team": "ops", "n": [1, 2]}
    assert item.words() == "Every 15 minutes, between 08:00 and 18:59, Monday through Friday"


def test_a_job_key_defaults_to_replace():
    assert one("* * * * * t ?jobKey=k").options.job_key_mode == "replace"
    assert one("* * * * * t ?jobKey=").options.job_key_mode is None


def test_comments_blank_lines_and_crlf():
    crontab = parse_crontab("# header\r\n\r\n  # indented comment\r\n0 * * * * hourly\r\n")
    assert [(i.line_number, i.identifier) for i in crontab.items] == [(4, "hourly")]
    assert not crontab.problems and not crontab.refused_by_workers


def test_sunday_is_0_or_7_and_dom_dow_combine_with_or():
    assert one("0 12 * * 7 t").values[4] == (0,)
    item = one("0 0 13 * 5 t")  # the 13th, or any Friday (the workers' rule, as cron's)
    firsts = []
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    for _ in range(4):
        moment = item.next_due(moment)
        firsts.append(moment.day)
    assert firsts == [6, 13, 20, 27]  # Fridays in November 2026, and Friday the 13th
    # A day-of-month field spelt out in full is no restriction: only Mondays match.
    assert one("0 0 1-31 * 1 t").normalised == "0 0 * * 1"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("60 * * * * t", "minute value 60 is outside 0-59."),
        ("* 24 * * * t", "hour value 24 is outside 0-23."),
        ("* * 0 * * t", "day of month value 0 is outside 1-31."),
        ("* * * 13 * t", "month value 13 is outside 1-12."),
        ("* * * * 8 t", "day of week value 8 is outside 0-6."),
        ("9-3 * * * * t", "minute range 9-3 does not go upwards."),
        ("*/0 * * * * t", "minute step in */0 must be at least 1."),
        ("1-10/2 * * * * t", "minute part '1-10/2' is not a number, a range or a wildcard."),
        ("@daily t", "not five time fields followed by a task"),
        ("* * * * * 9t", "the command is not `task`"),
        ("* * * * * t ?colour=red", "unknown option 'colour'"),
        ("* * * * * t ?id=a&id=b", "option id is given more than once."),
        ("* * * * * t ?fill=1y", "fill=1y is not a period"),
        ("* * * * * t ?queue=a.b", "option queue='a.b' is not a valid value for it."),
        ("* * * * * t ?jobKeyMode=drop", "option jobKeyMode='drop'"),
        ("* * * * * t {oops", "the command is not"),
        ("* * * * * t {oops}", "the payload is not valid JSON5"),
        ("* * * * * t {'a': 1} tail", "the command is not"),
    ],
)
def test_bad_lines_say_why(line, expected):
    assert expected in reason(line)


def test_a_bad_line_does_not_hide_the_good_ones():
    crontab = parse_crontab("0 4 * * * good\n61 * * * * bad\n0 5 * * * also_good")
    assert [i.identifier for i in crontab.items] == ["good", "also_good"]
    assert [(b.line_number, b.text) for b in crontab.problems] == [(2, "61 * * * * bad")]
    assert crontab.refused_by_workers  # the workers refuse the whole crontab over one line


def test_a_bad_line_is_shown_without_its_payload():
    (bad,) = parse_crontab("61 * * * * t {token: 'secret'}").problems
    assert bad.text == "61 * * * * t {…}"


def test_duplicate_identifiers():
    crontab = parse_crontab("0 4 * * * t\n0 5 * * * t\n0 6 * * * t ?id=t2")
    assert [i.identifier for i in crontab.items] == ["t", "t2"]
    assert "already used on line 1" in crontab.problems[0].reason


def test_a_schedule_that_never_comes_has_no_due_times():
    item = one("0 0 31 2 * never")  # accepted by the workers, never run
    assert item.next_due(NOW) is None and item.previous_due(NOW) is None
    assert item.words()


def test_huge_values_are_refused_without_walking_them():
    assert "outside" in reason("0-99999999999999999999 * * * * t")
    assert "outside" in reason("99999999999999999999 * * * * t")
    assert "too long a period" in reason("* * * * * t ?fill=99999999999999999999w")


def test_load__unset_text_and_file(tmp_path):
    assert load_crontab("") is None and load_crontab("   ") is None
    assert load_crontab("0 4 * * * t").source == "GRAPHILE_WORKER_CRONTAB text"
    path = tmp_path / "crontab"
    path.write_bytes(b"0 4 * * * t\n\xff\xfe 1 * * * bad\n")
    crontab = load_crontab(str(path))
    assert crontab.source == f"file {path}" and len(crontab.items) == 1
    assert crontab.problems[0].line_number == 2
    missing = load_crontab(str(tmp_path / "absent"))
    assert missing.problems[0].line_number == 0 and "cannot read it" in missing.problems[0].reason
    assert "cannot read it" in load_crontab(str(tmp_path)).problems[0].reason  # a directory
    assert "cannot read it" in load_crontab("/tmp/a\x00b").problems[0].reason


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_setting_loads_without_raising(setting):
    crontab = load_crontab(setting)
    assert crontab is None or all(bad.reason for bad in crontab.problems)


FIELD = st.sampled_from(
    ["*", "*/5", "0", "59", "1-5", "1,2,3", "7", "30", "31", "2", "60", "0-0", "*/0", "a", ""]
)
WORDS = st.text(
    alphabet=st.sampled_from([*list("abc_:/-?=&{}[]'\"%,. \t*0123456789"), "\x00", "\u2028"]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_without_raising(text):
    crontab = parse_crontab(text)
    for item in crontab.items:
        item.words()
        if item.next_due(NOW) is not None:
            assert item.previous_due(NOW) <= NOW < item.next_due(NOW)
    for bad in crontab.problems:
        assert bad.reason and len(bad.text) <= 300


@settings(max_examples=300, deadline=None)
@given(st.lists(FIELD, min_size=5, max_size=5), WORDS)
def test_near_miss_lines_parse_or_say_why(fields, command):
    crontab = parse_crontab(" ".join(fields) + " " + command)
    assert len(crontab.items) + len(crontab.problems) <= 1
    for item in crontab.items:
        if item.next_due(NOW) is not None:
            assert item.previous_due(NOW) <= NOW < item.next_due(NOW)
        assert item.words()
