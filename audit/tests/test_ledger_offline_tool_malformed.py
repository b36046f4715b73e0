"""tools/verify_export.py on malformed and tampered files: a value of the wrong JSON type or
out of range is named (NOT VERIFIED, the line and the field), never a traceback
(docs/ledger.md §7).

No database: the chains are made with the tool's own hash, as in the memory tests.
"""

import json
import sys
from datetime import datetime, timedelta

import pytest

from audit.tests.test_ledger_offline_tool import _after_newest, _run, _tool_module
from audit.tests.test_ledger_offline_tool_memory import _documents, _signed, _write

# Valid ISO 8601 with an offset, but outside the years 1-9999 once in UTC.
BEYOND_9999 = "9999-12-31T23:59:59-01:00"
BEFORE_YEAR_1 = "0001-01-01T00:00:00+01:00"


@pytest.fixture(scope="module")
def tool():
    return _tool_module()


@pytest.fixture
def documents(tool) -> list[dict]:
    """Sequences 1-5, oldest first: line n holds sequence n."""
    return _documents(tool, 5)


def _not_verified(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()[-1]


@pytest.mark.parametrize("field", ["received_at", "occurred_at"])
@pytest.mark.parametrize("value", [BEYOND_9999, BEFORE_YEAR_1])
def test_a_timestamp_outside_the_years_1_to_9999_in_utc_is_named(documents, tmp_path, field, value):
    documents[2][field] = value
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert _not_verified(result) == (
        f"NOT VERIFIED at line 3, sequence 3: cannot canonicalize: {field} is outside the "
        f"years 1-9999 in UTC: '{value}'"
    )


def test_a_checkpoint_signed_at_outside_the_years_1_to_9999_does_not_verify(
    tool, documents, tmp_path
):
    export = _write(tmp_path / "events.jsonl", documents)
    arguments = _signed(tool, tmp_path, documents[3])
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(
        json.dumps({**json.loads(checkpoint.read_text()), "signed_at": BEYOND_9999})
    )

    result = _run(export, *arguments)

    assert _not_verified(result) == (
        "NOT VERIFIED at sequence 4: checkpoint #1 at sequence 4: the signature does not verify"
    )


@pytest.mark.parametrize(
    ("sequence", "shown"),
    [([3], "[3]"), ({"n": 3}, "{'n': 3}"), ([], "[]"), ("3", "'3'"), (3.0, "3.0"), (True, "True")],
)
@pytest.mark.parametrize("alone", [False, True], ids=["in-a-chain", "alone"])
def test_a_sequence_that_is_not_an_integer_is_named_with_its_line(
    documents, tmp_path, sequence, shown, alone
):
    documents[2]["sequence"] = sequence
    export = _write(tmp_path / "events.jsonl", documents[2:3] if alone else documents)

    result = _run(export, "--allow-gaps")

    line = 1 if alone else 3
    assert _not_verified(result) == (
        f"NOT VERIFIED at line {line}: sequence is not an integer: {shown}"
    )


def test_an_event_without_a_sequence_is_named_with_its_line(documents, tmp_path):
    del documents[2]["sequence"]
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert _not_verified(result) == "NOT VERIFIED at line 3: the event has no sequence"


def _text(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(
    ("skew", "verified"),
    [("1e20", True), ("1.7e308", True), ("3596", True), ("3595.999999", False)],
)
def test_any_finite_clock_skew_is_an_answer_to_the_microsecond(
    tool, documents, tmp_path, skew, verified
):
    """The checkpoint at 5 is signed 3,596 s before sequence 5 was received (as in a chain
    cut and rebuilt): a skew of that much or more, up to the largest float, lets it pass."""
    received_5 = datetime.fromisoformat(documents[4]["received_at"])
    signed_at = _text(received_5 - timedelta(seconds=3596))
    arguments = _signed(tool, tmp_path, documents[4], signed_at=signed_at)
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export, *arguments, "--max-clock-skew", skew)

    if verified:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1] == "verified"
    else:
        assert _not_verified(result).startswith(
            f"NOT VERIFIED at line 5, sequence 5: checkpoint #1, signed at {signed_at}, "
            "vouches for sequence 5, but sequence 5 (line 5), at or below it, was received at "
        )
        assert "3596 s after that signing (beyond the allowed clock skew of 3596 s" in (
            result.stdout
        )


def test_a_checkpoint_signed_in_the_last_second_of_9999_is_checked(tool, documents, tmp_path):
    """Its signed_at plus the default 60 s of skew is beyond what a datetime holds."""
    arguments = _signed(tool, tmp_path, documents[4], signed_at="9999-12-31T23:59:59.999999Z")
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export, *arguments)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "checkpoint #1 at sequence 5: signature and hash verified",
        "verified",
    ]


# --- JSON beyond what the server writes ----------------------------------------------------------


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "maximum recursion depth exceeded"),
        (_nested(1_000), "maximum recursion depth exceeded"),
        ("9" * 5_000, "Exceeds the limit (4300 digits) for integer string conversion"),
    ],
    ids=["a-line-nested-100000-deep", "a-value-nested-1000-deep", "an-integer-of-5000-digits"],
)
def test_a_line_python_cannot_read_as_json_is_named(documents, tmp_path, text, message):
    export = _write(tmp_path / "events.jsonl", documents)
    lines = export.read_text().splitlines()
    lines[2] = lines[2].replace('"metadata": {', f'"metadata": {{"deep": {text}, ', 1)
    export.write_text("\n".join(lines) + "\n")

    result = _run(export)

    assert _not_verified(result).startswith(
        f"NOT VERIFIED at line 3: not readable as JSON: {message}"
    )


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (json.loads(_nested(400)), "metadata: nested deeper than 100 levels"),
        ({"n": float("nan")}, "metadata: NaN and Infinity are not JSON"),
        ({"\udc00": 1}, "metadata: an object key is not Unicode text (a lone surrogate)"),
    ],
    ids=["nested-400-deep", "nan", "a-lone-surrogate-as-a-key"],
)
def test_metadata_the_canonical_form_cannot_hold_is_named_with_its_field(
    documents, tmp_path, metadata, message
):
    documents[2]["metadata"] = metadata
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert (
        _not_verified(result)
        == f"NOT VERIFIED at line 3, sequence 3: cannot canonicalize: {message}"
    )


def test_a_lone_surrogate_in_a_string_field_is_named(documents, tmp_path):
    documents[2]["description"] = "\ud800"  # JSON can write it ("\\ud800"); UTF-8 cannot
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert _not_verified(result) == (
        "NOT VERIFIED at line 3, sequence 3: cannot canonicalize: description is not Unicode "
        "text (a lone surrogate)"
    )


def test_metadata_nested_deeper_than_the_server_allows_still_verifies(tool, tmp_path):
    """The server stores metadata up to 32 levels deep: far below the tool's limit."""
    documents = _documents(tool, 1)
    documents[0]["metadata"] = json.loads(_nested(90))
    documents[0]["hash"] = tool.event_hash(documents[0]["prev_hash"], documents[0])
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_checkpoint_whose_details_are_nested_too_deep_does_not_verify(tool, documents, tmp_path):
    export = _write(tmp_path / "events.jsonl", documents)
    arguments = _signed(tool, tmp_path, documents[3])
    checkpoint = tmp_path / "checkpoint.json"
    data = json.loads(checkpoint.read_text())
    checkpoint.write_text(json.dumps({**data, "details": json.loads(_nested(400))}))

    result = _run(export, *arguments)

    assert _not_verified(result) == (
        "NOT VERIFIED at sequence 4: checkpoint #1 at sequence 4: the signature does not verify"
    )


# --- the checkpoint and public key files --------------------------------------------------------

CHECKPOINT_EXPECTED = (
    "is not a checkpoint JSON file (one checkpoint, or a page of GET /api/v1/ledger/checkpoints)"
)
KEY_EXPECTED = (
    "is not a public key file (PEM, as manage.py ledger_public_key prints it, or a saved "
    "GET /api/v1/ledger/public-key answer)"
)


def test_a_checkpoint_file_nested_too_deep_is_named_with_its_option(tool, documents, tmp_path):
    export = _write(tmp_path / "events.jsonl", documents)
    arguments = _signed(tool, tmp_path, documents[3])
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text("[" * 100_000 + "]" * 100_000)

    result = _run(export, *arguments)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"error: --checkpoint {checkpoint} {CHECKPOINT_EXPECTED}: maximum recursion depth"
    ), result.stderr


def test_a_public_key_file_nested_too_deep_is_named_with_its_option(tool, documents, tmp_path):
    export = _write(tmp_path / "events.jsonl", documents)
    arguments = _signed(tool, tmp_path, documents[3])
    key = tmp_path / "ledger.pub"
    key.write_text('{"public_key": ' + "[" * 100_000 + "]" * 100_000 + "}")

    result = _run(export, *arguments)

    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        result.stderr == f"error: --public-key {key} {KEY_EXPECTED}: it holds no PEM public key\n"
    )


@pytest.mark.parametrize("retired_keys", [True, 5, "-----BEGIN PUBLIC KEY-----", {"a": 1}])
def test_a_saved_public_key_answer_whose_retired_keys_are_not_a_list_still_gives_its_key(
    tool, documents, tmp_path, retired_keys
):
    export = _write(tmp_path / "events.jsonl", documents)
    arguments = _signed(tool, tmp_path, documents[3])
    key = tmp_path / "ledger.pub"
    key.write_text(json.dumps({"public_key": key.read_text(), "retired_keys": retired_keys}))

    result = _run(export, *arguments)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "verified"


# --- what the output names -----------------------------------------------------------------------


def test_a_lone_surrogate_the_output_names_is_written_escaped(tool, documents, tmp_path):
    """The tenant is not hashed, and a checkpoint's id not signed: JSON can escape a lone
    surrogate there ("\\ud800"), which no UTF-8 output can write as it is."""
    for document in documents:
        document["tenant"] = "\ud800"
    export = _write(tmp_path / "events.jsonl", documents)
    arguments = _signed(tool, tmp_path, documents[3])
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps({**json.loads(checkpoint.read_text()), "id": "\udc00"}))

    result = _run(export, *arguments)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "\\ud800: 5 events verified",
        "checkpoint #\\udc00 at sequence 4: signature and hash verified",
        _after_newest("\\ud800", 5, 5, "checkpoint #\\udc00 at sequence 4"),
        "verified",
    ]


# --- every field the tool reads, of every JSON type ---------------------------------------------

ODD_VALUES = [
    None,
    True,
    1.5,
    10**30,
    float("nan"),
    "",
    "x",
    "\ud800",
    [],
    [3],
    {},
    {"id": [1]},
    "f" * 64,
    BEYOND_9999,
]
EVENT_FIELDS = [
    "sequence",
    "hash",
    "prev_hash",
    "id",
    "occurred_at",
    "received_at",
    "source_ip",
    "metadata",
    "actor",
    "target",
    "event_id",
    "action",
    "outcome",
    "description",
]
CHECKPOINT_FIELDS = ["id", "tenant_id", "kind", "sequence", "hash", "signed_at", "details"]


def _main(tool, capsys, *arguments) -> tuple[int, str]:
    """The tool's main in-process (fast enough for a few hundred runs); an exception fails.
    Its output escapes a lone surrogate, as the command line's does."""
    sys.stdout.reconfigure(errors="backslashreplace")
    try:
        status = tool.main([str(a) for a in arguments])
    except SystemExit as exit:  # a usage error: argparse exits
        status = exit.code
    captured = capsys.readouterr()
    return status, (captured.out + captured.err).splitlines()[-1]


@pytest.mark.parametrize("field", EVENT_FIELDS)
def test_an_event_field_of_any_json_type_is_named_with_its_line(
    tool, documents, tmp_path, capsys, field
):
    """Sequence 3 (line 3) holds the odd value; with and without a checkpoint at 4. A hash
    recomputed over the odd value would not help: the value is what is named."""
    checkpoint = _signed(tool, tmp_path, documents[3])
    for value in ODD_VALUES:
        changed = [dict(d) for d in documents]
        changed[2][field] = value
        export = _write(tmp_path / "events.jsonl", changed)
        for arguments in ([], checkpoint):
            status, last = _main(tool, capsys, export, *arguments)

            assert (status, last[:21]) == (1, "NOT VERIFIED at line "), (value, arguments, last)


@pytest.mark.parametrize("signed", [False, True], ids=["as-given", "signed-over-it"])
@pytest.mark.parametrize("field", CHECKPOINT_FIELDS)
def test_a_checkpoint_field_of_any_json_type_is_an_answer(
    tool, documents, tmp_path, capsys, field, signed
):
    """Signed over the odd value where the signed message can hold it: whatever the value,
    verified or not verified, never a traceback."""
    export = _write(tmp_path / "events.jsonl", documents)
    for value in ODD_VALUES:
        as_given = not signed
        try:
            arguments = _signed(tool, tmp_path, documents[3], **({field: value} if signed else {}))
        except (tool.Invalid, ValueError):  # not signable: signed over the unchanged one
            arguments, as_given = _signed(tool, tmp_path, documents[3]), True
        if as_given:
            path = tmp_path / "checkpoint.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))
        status, last = _main(tool, capsys, export, *arguments)

        assert status in (0, 1), (value, last)
        assert last == "verified" or last.startswith("NOT VERIFIED"), (value, last)


def test_a_checkpoint_tenant_label_of_any_json_type_is_an_answer(tool, documents, tmp_path, capsys):
    """The tenant's slug beside a checkpoint is not signed: the export's own (acme) verifies,
    another string is a mix-up of files (exit 2), any other type a malformed checkpoint (exit
    1); never a traceback."""
    sys.stderr.reconfigure(errors="backslashreplace")  # as the command line's stderr
    export = _write(tmp_path / "events.jsonl", documents)
    arguments = _signed(tool, tmp_path, documents[3])
    path = tmp_path / "checkpoint.json"
    checkpoint = json.loads(path.read_text())
    for value in [*ODD_VALUES, "acme"]:
        path.write_text(json.dumps({**checkpoint, "tenant": value}))

        status, last = _main(tool, capsys, export, *arguments)

        if value == "acme":
            assert (status, last) == (0, "verified")
        elif isinstance(value, str):
            assert status == 2, (value, last)
            # In-process, argparse names the program pytest.
            assert last.split(": ", 1)[1].startswith("error: these checkpoints are of tenant ")
            assert last.endswith(", this export is of tenant acme: give tenant acme's checkpoints")
        else:
            assert (status, last) == (
                1,
                f"NOT VERIFIED: {path}: a checkpoint's tenant is not a string",
            ), value


# --- what a reader would take for the event while no hash covers it -------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(approved_by="CFO"),
            "field 'approved_by' is not part of an event (no hash covers it)",
        ),
        (
            lambda d: d.update(actor_id="mallory", actor_name="Mallory"),
            "both actor and actor_id: a line holds one shape or the other",
        ),
        (
            lambda d: d["target"].update(owner="mallory"),
            "target.owner is not part of an event (no hash covers it)",
        ),
    ],
    ids=["an-unknown-field", "both-shapes", "an-unknown-nested-field"],
)
def test_a_field_no_hash_covers_is_named(documents, tmp_path, change, message):
    change(documents[2])
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert (
        _not_verified(result)
        == f"NOT VERIFIED at line 3, sequence 3: cannot canonicalize: {message}"
    )


def test_the_database_columns_the_hash_leaves_out_are_taken(documents, tmp_path):
    """A dump of the table holds them (docs/ledger.md: not hashed)."""
    for document in documents:
        document.update(stored_at=document["received_at"], submitted_by="api_key:AbCd1234")
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("key", ["description", "n"])
def test_a_key_given_twice_in_one_object_is_named(documents, tmp_path, key):
    """Python keeps the last value, other readers the first: a reader could be shown the
    value no hash covers."""
    export = _write(tmp_path / "events.jsonl", documents)
    lines = export.read_text().splitlines()
    lines[2] = lines[2].replace(f'"{key}": ', f'"{key}": "EVIL", "{key}": ', 1)
    export.write_text("\n".join(lines) + "\n")

    result = _run(export)

    assert _not_verified(result) == (
        f"NOT VERIFIED at line 3: key {key!r} appears twice in one object: readers differ on "
        "which value counts (the server never writes one twice)"
    )
