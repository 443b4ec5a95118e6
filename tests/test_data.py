"""Problem loading from the study's real parquet files, JSONL, saved datasets, and clear errors for bad files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sdlab import SdlabError
from sdlab.core.data import DataError, load_problems
from sdlab.core.problem import Problem
from tests.conftest import SHARED_DATA

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

# file -> (rows, distinct ids) as described in the shared data README
REAL_FILES = {
    "evaluation/aime24.parquet": (30, 30),
    "evaluation/aime25.parquet": (30, 30),
    "evaluation/amc23.parquet": (40, 40),
    "evaluation/math500.parquet": (500, 500),
    "coverage/seen_1x64.parquet": (64, 1),
    "coverage/seen_8x8.parquet": (64, 8),
    "coverage/seen_64.parquet": (64, 64),
    "coverage/seen_128.parquet": (128, 128),
}


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found (the shared math data sits beside the repository)")
    return SHARED_DATA


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_parquet_files_load_with_struct_or_json_cells(shared, name):
    problems = load_problems(shared / name)
    rows, distinct = REAL_FILES[name]
    assert len(problems) == rows
    assert len({p.id for p in problems}) == distinct
    for problem in problems:
        assert problem.source == Path(name).stem
        assert problem.messages[-1]["role"] == "user"
        assert problem.question == problem.messages[-1]["content"]
        assert problem.question.rstrip().endswith(INSTRUCTION)
        assert problem.answer and problem.answer == problem.answer.strip()


def test_real_file_details(shared):
    aime24 = load_problems(shared / "evaluation/aime24.parquet", limit=3)  # native structs
    aime25 = load_problems(shared / "evaluation/aime25.parquet", limit=3)  # JSON strings
    assert len(aime24) == 3 and aime24[0].answer == "540" and aime24[0].id == "2"
    assert aime25[0].answer == "70" and aime25[0].meta["data_source"] == "aime_2025"
    assert aime25[0].meta["raw_problem"] in aime25[0].question
    math500 = load_problems(shared / "evaluation/math500.parquet", limit=5)
    assert all(p.solution for p in math500)
    assert math500[0].id == "test/precalculus/807.json" and math500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    coverage = load_problems(shared / "coverage/seen_64.parquet", limit=2)
    assert coverage[0].id == "0960c667-1632-44ff-a93c-9c162a12d109" and coverage[0].solution is None


def write_jsonl(path: Path, rows: list, *, blank_lines: bool = False) -> Path:
    lines = [json.dumps(row) if not isinstance(row, str) else row for row in rows]
    path.write_text(("\n\n" if blank_lines else "\n").join(lines) + "\n")
    return path


def verl_row(question: str = "What is 1+1?", answer=2, **extra) -> dict:
    return {
        "data_source": "toy",
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
        "reward_model": {"ground_truth": answer, "style": "rule"},
        "extra_info": {"index": extra.pop("index", 0), **extra},
    }


def test_jsonl_simple_and_verl_rows(tmp_path):
    simple = write_jsonl(
        tmp_path / "simple.jsonl",
        [{"question": "2+2?", "answer": 4}, {"problem": "Half of 1?", "answer": 0.5, "solution": "1/2", "id": "h"}, {"question": "3*1?", "answer": 3.0}],
        blank_lines=True,
    )
    problems = load_problems(simple)
    assert [p.answer for p in problems] == ["4", "0.5", "3"]
    assert [p.id for p in problems] == ["0", "h", "2"]
    assert problems[1].solution == "1/2" and problems[1].messages == ({"role": "user", "content": "Half of 1?"},)
    assert problems[0].source == "simple"
    assert load_problems(simple, limit=2) == problems[:2]

    verl = write_jsonl(tmp_path / "verl.jsonl", [verl_row(index=7, solution="1+1=2"), {**verl_row(answer="\\frac12"), "prompt": json.dumps(verl_row()["prompt"])}])
    first, second = load_problems(verl)
    assert first.id == "7" and first.answer == "2" and first.solution == "1+1=2" and len(first.messages) == 2
    assert first.question == "What is 1+1?" and second.answer == "\\frac12"


def test_parquet_written_with_json_string_cells(tmp_path):
    row = verl_row(answer="17")
    table = pa.table({key: [json.dumps(value) if isinstance(value, (dict, list)) else value] for key, value in row.items()})
    pq.write_table(table, tmp_path / "strings.parquet")
    (problem,) = load_problems(tmp_path / "strings.parquet")
    assert isinstance(problem, Problem) and problem.answer == "17" and problem.question == "What is 1+1?"


def test_saved_dataset_directory_and_splits(tmp_path):
    import datasets

    rows = {"question": ["1+1?", "2+3?"], "answer": ["2", "5"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "flat"))
    assert [p.answer for p in load_problems(tmp_path / "flat")] == ["2", "5"]
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "dict"))
    assert [p.question for p in load_problems(tmp_path / "dict", split="test", limit=1)] == ["1+1?"]
    with pytest.raises(DataError, match=r"no split 'train' in this saved dataset \(has \['test'\]\)"):
        load_problems(tmp_path / "dict")
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(DataError, match="not one saved with datasets' save_to_disk"):
        load_problems(tmp_path / "plain_dir")


def test_unreachable_hub_dataset_fails_fast_and_clearly(monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(DataError, match=r"someone/no-such-dataset: not a local file or directory.*hub dataset \(split 'test'\) failed \(HF_HUB_OFFLINE is set\)"):
        load_problems("someone/no-such-dataset", split="test")
    assert time.monotonic() - start < 10


@pytest.fixture
def unreachable_hub(monkeypatch):
    """A hub endpoint that refuses connections at once, with offline mode off."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def test_hub_dataset_with_an_unreachable_hub_fails_at_once_without_retries(unreachable_hub):
    start = time.monotonic()
    with pytest.raises(SdlabError, match=r"someone/no-such-dataset: not a local file or directory, and the Hugging Face hub \(http://127.0.0.1:9\) cannot be reached .*HF_HUB_OFFLINE=1"):
        load_problems("someone/no-such-dataset")
    assert time.monotonic() - start < 5  # the libraries' own retries took about a minute


def test_jsonl_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"question": "1+1?", "answer": "2"}\n')
    assert [p.answer for p in load_problems(path)] == ["2"]


def test_jsonl_with_invalid_utf8_names_file_row_and_byte(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"question": "1+1?", "answer": "2"}\n\n{"question": "caf\xe9?", "answer": "3"}\n')
    with pytest.raises(DataError) as err:
        load_problems(path)
    assert str(err.value) == f"{path}: row 1 (0-based; line 3): not valid UTF-8 (byte 0xe9 at column 18); save the file as UTF-8"


def test_organism_specs_delegate():
    problems = load_problems("organism:linmod:4", limit=2)
    assert len(problems) == 2 and all(isinstance(p, Problem) and p.answer for p in problems)


# ---------------------------------------------------------------- one clear error per kind of bad file


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match=r"nope\.parquet: no such file or directory; check the path"):
        load_problems(tmp_path / "nope.parquet")
    (tmp_path / "problems.csv").write_text("question,answer\n1+1,2\n")
    with pytest.raises(DataError, match=r"problems\.csv: unknown extension '\.csv'; problems load from \.parquet, \.jsonl"):
        load_problems(tmp_path / "problems.csv")
    assert issubclass(DataError, SdlabError)


def test_empty_files(tmp_path):
    for path in (tmp_path / "empty.jsonl", tmp_path / "blank.jsonl"):
        path.write_text("" if path.stem == "empty" else "\n  \n")
        with pytest.raises(DataError, match=rf"{path.name}: no problems in it \(empty\)"):
            load_problems(path)
    pq.write_table(pa.table({"question": pa.array([], pa.string()), "answer": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    with pytest.raises(DataError, match=r"empty\.parquet: no problems in it"):
        load_problems(tmp_path / "empty.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read it as parquet"):
        load_problems(tmp_path / "broken.parquet")


def test_missing_column(tmp_path):
    pq.write_table(pa.table({"prompt": ['[{"role": "user", "content": "x"}]'], "answer": ["1"]}), tmp_path / "half.parquet")
    with pytest.raises(DataError, match=r"half\.parquet: missing column 'reward_model' \(has \['prompt', 'answer'\]\); a verl-style file needs"):
        load_problems(tmp_path / "half.parquet")
    write_jsonl(tmp_path / "rows.jsonl", [{"question": "a", "answer": "1"}, {"question": "b"}])
    with pytest.raises(DataError, match=r"rows\.jsonl: row 1 \(0-based; line 2\): missing field 'answer'"):
        load_problems(tmp_path / "rows.jsonl")


def test_unparseable_json(tmp_path):
    row = {**verl_row(), "reward_model": "{'ground_truth': '2'"}
    write_jsonl(tmp_path / "cell.jsonl", [verl_row(), verl_row(), row])
    with pytest.raises(DataError, match=r"cell\.jsonl: row 2 \(0-based; line 3\), field 'reward_model': not valid JSON .*; fix or drop that row"):
        load_problems(tmp_path / "cell.jsonl")
    write_jsonl(tmp_path / "line.jsonl", [{"question": "a", "answer": "1"}, '{"question": "b", '], blank_lines=True)
    with pytest.raises(DataError, match=r"line\.jsonl: row 1 \(0-based; line 3\): not valid JSON"):
        load_problems(tmp_path / "line.jsonl")


@pytest.mark.parametrize(
    ("answer", "message"),
    [("   ", "empty ground truth"), (None, "got NoneType"), (["1", "2"], "got list"), ({"a": 1}, "got dict"), (True, "got bool")],
)
def test_bad_ground_truths(tmp_path, answer, message):
    table = pa.table({"prompt": [json.dumps(verl_row()["prompt"])] * 2, "reward_model": [json.dumps({"ground_truth": "1"}), json.dumps({"ground_truth": answer})]})
    pq.write_table(table, tmp_path / "truths.parquet")
    with pytest.raises(DataError, match=rf"truths\.parquet: row 1 \(0-based\), field 'reward_model.ground_truth': .*{message}"):
        load_problems(tmp_path / "truths.parquet")


def test_no_user_message(tmp_path):
    row = {**verl_row(), "prompt": [{"role": "system", "content": "Be brief."}]}
    write_jsonl(tmp_path / "nouser.jsonl", [row])
    with pytest.raises(DataError, match=r"nouser\.jsonl: row 0 \(0-based; line 1\), field 'prompt': no user message"):
        load_problems(tmp_path / "nouser.jsonl")
