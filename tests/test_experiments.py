"""Smoke test of experiments/run.py: --quick on a tiny random backbone and a hand-made SIB-200 tree.

Runs the whole driver (xmixup data -> train every method -> evaluate, --no-source, noise sweep,
CKA before/after -> summary.json, RESULTS.md block, PNG) and checks the summary's structure and
value ranges; then that --resume does no work again and keeps the hand-written report text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import make_tiny_backbone

REPO = Path(__file__).resolve().parent.parent
LABELS = ["science/technology", "travel", "politics", "sports", "health"]
# SIB-200 folder names of the driver's classify languages: trained de/zh/ar (+ en), unseen ur/sw/is.
LANGS = ["eng_Latn", "deu_Latn", "zho_Hans", "arb_Arab", "urd_Arab", "swh_Latn", "isl_Latn"]
WORDS = {
    "science/technology": "The new computer chip uses less power than the old one",
    "travel": "The train to the old town leaves from the station at noon",
    "politics": "The president met the ministers of the government today",
    "sports": "The football team won the match in the last minute",
    "health": "Doctors say that sleep and water keep the body healthy",
}


def _make_sib(root: Path) -> None:
    for lang in LANGS:
        d = root / "classification" / "sib200" / lang
        d.mkdir(parents=True)
        for split, n in (("train", 12), ("dev", 3), ("test", 8)):
            rows = ["index_id\tcategory\ttext"]
            for i in range(n):
                label = LABELS[i % len(LABELS)]
                text = WORDS[label] if lang == "eng_Latn" else f"{lang[:3]} {WORDS[label]} {i}"
                rows.append(f"{split}{i}\t{label}\t{text}")
            (d / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "experiments" / "run.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.timeout(300)
def test_quick_run_writes_summary(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _make_sib(data)
    backbone = make_tiny_backbone(tmp_path / "backbone", num_layers=2, hidden=32, heads=2)
    out = tmp_path / "out"
    args = ["--quick", "--tasks", "classify", "--jobs", "1", "--data", str(data)]
    # --limit above the 12 hand-made items: every label must be in each training file.
    args += ["--backbone", str(backbone), "--out", str(out), "--limit", "100"]
    proc = _run(args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "done classify/xmixup/seed1" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"classify", "meta"}
    cls = summary["classify"]
    assert set(cls) == {"xmixup", "translate-train", "translate-test", "zero-shot"}
    for method, e in cls.items():
        assert e["metric"] == "accuracy"
        assert e["unseen"] == ["ur", "sw", "is"]
        assert set(e["per_lang"]) == {"ur", "sw", "is", "de", "zh", "ar"}, method
        assert all(0.0 <= v <= 100.0 for v in e["per_lang"].values())
        assert 0.0 <= e["avg"] <= 100.0
        assert e["avg"] == pytest.approx(sum(e["per_lang"].values()) / 6)
        assert e["items_per_lang"] == {lang: 6 for lang in e["per_lang"]}
    xm = cls["xmixup"]
    # λ = λ0·sigmoid(.) with λ0 = 0.5: strictly inside (0, 0.5); baselines report zeros.
    lam = xm["lambda"]
    assert 0.0 < lam["min"] <= lam["mean"] <= lam["max"] < 0.5
    assert lam["std"] >= 0.0
    assert cls["translate-train"]["lambda"]["max"] == 0.0
    for key in ("target_stream", "source_stream", "no_source"):
        assert 0.0 <= xm[key]["avg"] <= 100.0
    assert set(xm["sweep"]) == {"0", "0.15", "0.3"}
    assert set(cls["translate-test"]["sweep"]) == {"0", "0.15", "0.3"}
    # The headline is a realistic machine translation (P = 0.15); a human one is the oracle.
    assert xm["sweep"]["0.15"]["avg"] == pytest.approx(xm["avg"])
    assert xm["oracle_clean"]["avg"] == pytest.approx(xm["sweep"]["0"]["avg"])
    assert "P = 0.15" in xm["regime"]["source_at_inference"]
    assert cls["translate-train"]["regime"]["source_at_inference"].startswith("none")
    assert "oracle_clean" not in cls["translate-train"]
    assert set(xm["dev"]["per_lang"]) == {"ur", "sw", "is"}  # selection data: unseen languages
    # ...of SIB-200's own dev split: no language's version of a dev item is in a training file.
    dev_ids = [json.loads(line)["id"] for line in (out / "data" / "classify" / "dev.jsonl").open()]
    assert len(dev_ids) == 9 and all(i.startswith("sib200-dev-dev") for i in dev_ids), dev_ids
    trained = (out / "data" / "classify" / "train.jsonl").read_text()
    assert not any(f"-{i.split('-')[2]}-" in trained for i in dev_ids)
    # the no-translation fallback is selected on dev too, on the same items
    assert set(xm["dev"]["no_source"]["per_lang"]) == {"ur", "sw", "is"}
    assert 0.0 <= xm["dev"]["no_source"]["avg"] <= 100.0
    assert "no_source" not in cls["translate-train"]["dev"]
    # The trust head is fitted at the end of xmixup training; its AUROC sits under the task.
    assert 0.0 <= xm["trust_auroc"] <= 1.0 and len(xm["trust"]["auroc_per_seed"]) == 1
    split = xm["trust"]["split_p0.15"]
    assert split["n_trusted"] + split["n_rest"] == 36 and split["n_trusted"] == round(0.8 * 36)
    assert "trust_auroc" not in cls["translate-train"]
    assert all(0.0 < v["lambda_mean"] < 0.5 for v in xm["sweep"].values())
    cka = xm["cka"]
    assert len(cka["before"]) == len(cka["after"]) == 3  # embeddings + 2 layers
    assert all(-1e-6 <= v <= 1.0 + 1e-6 for v in cka["before"] + cka["after"])
    assert xm["cost"]["ratio_vs_translate_train"] > 0.0
    assert summary["meta"]["budgets"]["classify"]["steps"] == 4
    assert summary["meta"]["headline_noise_p"] == 0.15

    report = (out / "RESULTS.md").read_text()
    assert "xmixup: mixed target stream alone" in report
    assert "Translation quality sweep" in report
    assert "xmixup (oracle: human translation, P = 0)" in report
    assert "Translation trust (`translation_trust`): AUROC clean vs P = 0.3" in report
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --resume: nothing retrained or re-evaluated; hand-written text around the block is kept.
    (out / "RESULTS.md").write_text("# Mine\n\nintro\n\n" + report + "\noutro\n")
    proc = _run([*args, "--resume"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "nothing to do (resumed)" in proc.stdout
    assert "done classify/xmixup/seed1" in proc.stdout
    text = (out / "RESULTS.md").read_text()
    assert text.startswith("# Mine\n\nintro\n") and text.rstrip().endswith("outro")
    assert text.count("<!-- generated:begin -->") == 1
    again = json.loads((out / "summary.json").read_text())
    assert again["classify"]["xmixup"]["avg"] == pytest.approx(xm["avg"])
    budget = again["meta"]["budgets"]["classify"]
    assert budget["steps"] == 4 and budget["max_length"] == 32

    # The mixing-off fallback of experiments/fallback.py reaches the summary and the report.
    fallback = [sys.executable, str(REPO / "experiments" / "fallback.py")]
    proc = subprocess.run(
        [*fallback, "--runs", str(out / "runs" / "classify")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    unmixed = json.loads(
        (out / "runs" / "classify" / "xmixup-seed1" / "eval-unmixed.json").read_text()
    )
    assert unmixed["lambda"]["max"] == 0.0 and unmixed["source_used"] is False
    # ...and on the selection data, where the choice between the two fallbacks is made
    dev_unmixed = json.loads(
        (out / "runs" / "classify" / "xmixup-seed1" / "eval-dev-unmixed.json").read_text()
    )
    assert dev_unmixed["items"] == 9 and dev_unmixed["source_used"] is False
    proc = _run([*args, "--aggregate-only"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    xm = json.loads((out / "summary.json").read_text())["classify"]["xmixup"]
    assert xm["no_source_unmixed"]["avg"] == pytest.approx(unmixed["avg"])
    assert xm["dev"]["no_source_unmixed"]["avg"] == pytest.approx(dev_unmixed["avg"])
    assert "no translation sent (mixing off)" in (out / "RESULTS.md").read_text()

    # Another task's invocation (another budget) keeps the classify numbers and their budget.
    proc = _run([*args, "--tasks", "tag", "--aggregate-only"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    merged = json.loads((out / "summary.json").read_text())
    assert merged["classify"]["xmixup"]["avg"] == pytest.approx(xm["avg"])
    assert merged["meta"]["budgets"]["classify"]["steps"] == 4
    assert "Budget per run: 4 steps x batch 4, max length 32" in (out / "RESULTS.md").read_text()


def test_train_args_reach_every_run_and_xmixup_args_only_xmixup(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        import run as driver
    finally:
        sys.path.pop(0)
    args = driver.parse_args(
        [
            "--out",
            str(tmp_path),
            "--data",
            str(tmp_path),
            "--xmixup-args",
            "--mixup-layer 4 --sampling-k 100",
            "--train-args",
            "--freeze-layers 7 --lr 5e-4",
        ]
    )
    data = {k: str(tmp_path / k) for k in ("train", "train-en", "eval", "cka", "dev")}
    jobs = [j for j in driver.plan_jobs(args, "classify", data) if j.kind == "run"]
    assert {j.method for j in jobs} >= {"xmixup", "translate-train"}
    for job in jobs:
        extra = "--mixup-layer" in job.train_args and "--sampling-k" in job.train_args
        assert extra == (job.method == "xmixup"), (job.method, job.train_args)
        # the budget recipe reaches every method, baselines included
        assert job.train_args[job.train_args.index("--freeze-layers") + 1] == "7"
        assert job.train_args[job.train_args.index("--lr") + 1] == "5e-4"
    xm = next(j for j in jobs if j.method == "xmixup")
    assert xm.train_args[xm.train_args.index("--mixup-layer") + 1] == "4"


def test_tagging_plan_is_the_pseudo_label_regime(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        import run as driver
    finally:
        sys.path.pop(0)
    data = {k: str(tmp_path / k) for k in ("train", "train-en", "eval", "cka", "dev")}
    args = driver.parse_args(["--out", str(tmp_path / "o"), "--data", str(tmp_path)])
    jobs = {j.method: j for j in driver.plan_jobs(args, "tag", data) if j.kind == "run"}
    teacher = str((tmp_path / "o" / "runs" / "tag" / "zero-shot-seed1" / "model").resolve())
    assert driver.is_teacher(jobs["zero-shot"], args)
    assert jobs["zero-shot"].train == data["train-en"]  # the teacher sees English gold only
    for method in ("xmixup", "translate-train"):
        a = jobs[method].train_args
        assert a[a.index("--target-labels") + 1] == "pseudo"
        assert a[a.index("--teacher") + 1] == teacher
        assert not driver.is_teacher(jobs[method], args)
    assert "--target-labels" not in jobs["zero-shot"].train_args
    # Every run is also evaluated on the dev split (model selection), never on eval for that.
    assert jobs["xmixup"].evals["dev"] == ["--data", data["dev"]]
    assert jobs["xmixup"].evals["dev-no-source"] == ["--data", data["dev"], "--no-source"]
    assert "dev-no-source" not in jobs["translate-train"].evals
    gold = driver.parse_args(
        ["--out", str(tmp_path), "--data", str(tmp_path), "--tag-labels", "gold"]
    )
    a = next(j for j in driver.plan_jobs(gold, "tag", data) if j.method == "xmixup").train_args
    assert a[a.index("--target-labels") + 1] == "gold" and "--teacher" not in a
    # projected: the students train on the file build_data labelled through the alignment
    proj = driver.parse_args(
        ["--out", str(tmp_path), "--data", str(tmp_path), "--tag-labels", "projected"]
    )
    with_proj = {**data, "train-projected": str(tmp_path / "train-projected")}
    runs = {j.method: j for j in driver.plan_jobs(proj, "tag", with_proj) if j.kind == "run"}
    for method in ("xmixup", "translate-train"):
        a = runs[method].train_args
        assert runs[method].train == with_proj["train-projected"]
        assert a[a.index("--target-labels") + 1] == "pseudo" and "--teacher" not in a
        assert not driver.is_teacher(runs[method], proj)
    assert runs["zero-shot"].train == data["train-en"]


def _squad(path: Path, titles: list[str], lang: str, n: int) -> None:
    """A SQuAD v1.1 file: per title one article of ``n`` questions on one paragraph."""
    data = []
    for k, title in enumerate(titles):
        context = f"{lang} {title}: the match ended two to one in the last minute"
        start = context.index("two to")
        qas = [
            {
                "id": f"a{k}q{i}",
                "question": f"{lang} who won {i}",
                "answers": [{"text": "two", "answer_start": start}],
            }
            for i in range(n)
        ]
        data.append({"title": title, "paragraphs": [{"context": context, "qas": qas}]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data}), encoding="utf-8")


def test_qa_selects_on_mlqa_not_on_xquad_items(tmp_path: Path) -> None:
    from experiments.plan import build_data
    from experiments.tasks import TASKS

    spec = TASKS["qa"]
    xquad = tmp_path / spec.sub
    for lang in ("en", "de", "zh", "ar", "es", "el", "ro", "vi"):
        # several articles, so that the hash split puts some on each side
        _squad(xquad / f"xquad.{lang}.json", [f"Article {k}" for k in range(6)], lang, 3)
    mlqa = tmp_path / spec.dev_sub
    for lang in ("en", *spec.dev_langs):
        _squad(mlqa / f"dev-context-{lang}-question-{lang}.json", ["Another article"], lang, 2)
    out = tmp_path / "out"
    log = tmp_path / "data.log"
    paths = build_data("qa", tmp_path, out, limit=None, eval_limit=None, dev_limit=60, log=log)
    dev = [json.loads(line) for line in Path(paths["dev"]).read_text().splitlines()]
    assert sorted({r["lang"] for r in dev}) == sorted(spec.dev_langs)
    assert len(dev) == 2 * len(spec.dev_langs)
    assert all(r["id"].startswith("mlqa-") for r in dev), [r["id"] for r in dev]
    train = Path(paths["train"]).read_text()
    assert all(r["context"] not in train for r in dev)
    # a data root without the selection set is refused, naming the folder
    other = tmp_path / "no-mlqa"
    (other / spec.sub).parent.mkdir(parents=True)
    (other / spec.sub).symlink_to(xquad)
    with pytest.raises(SystemExit, match="MLQA_V1/dev"):
        build_data("qa", other, tmp_path / "o2", limit=None, eval_limit=None, dev_limit=6, log=log)


def test_recorded_commands_name_no_machine_directory() -> None:
    from experiments.run import public_command

    cmd = (
        "python experiments/run.py --data /srv/data/public --out artifacts/x "
        "--teacher /home/u/runs/zero-shot-seed1/model --tasks tag"
    )
    assert public_command(cmd) == (
        "python experiments/run.py --data DATA --out artifacts/x --teacher model --tasks tag"
    )


def _entry(avg: float, seeds: list[float], **extra: object) -> dict[str, object]:
    std = abs(seeds[0] - seeds[1]) / 2
    return {"avg": avg, "seed_avgs": seeds, "seed_std": std, **extra}


def test_levers_table_puts_each_ablation_beside_its_default(tmp_path: Path) -> None:
    from experiments.levers import BEGIN, END, LEVERS, main

    results = tmp_path / "results"
    results.mkdir()
    summary: dict[str, object] = {}
    for key in {lever.default for lever in LEVERS}:
        summary[key] = {
            "xmixup": _entry(40.0, [39.5, 40.5], no_source={"avg": 39.0}, dev={"avg": 45.0}),
            "translate-train": _entry(38.0, [38.0, 38.0]),
        }
    (results / "summary.json").write_text(json.dumps(summary))
    cell = _entry(
        43.0, [42.8, 43.2], no_source={"avg": 42.5}, no_source_unmixed={"avg": 41.5},
        oracle_clean={"avg": 43.1},
        dev={"avg": 47.0}, **{"lambda": {"mean": 0.2}},
    )  # fmt: skip
    (results / "ablation-qa-cw0.json").write_text(json.dumps({"qa": {"xmixup": cell}}))
    small = _entry(40.5, [40.0, 41.0])
    (results / "ablation-qa-alpha0.json").write_text(json.dumps({"qa": {"xmixup": small}}))
    report = tmp_path / "RESULTS.md"
    report.write_text(f"hand text\n\n{BEGIN}\nold\n{END}\n\nmore hand text\n")

    assert main(["--results", str(results), "--report", str(report)]) == 0

    rows = json.loads((results / "levers.json").read_text())["qa"]
    assert rows[0]["lever"] == "default (`qa_layer8`)" and rows[0]["vs_translate_train"] == 2.0
    assert [r["lever"] for r in rows].index("default (`qa`)") == 4  # after its 3 levers
    cw0 = next(r for r in rows if r.get("file") == "ablation-qa-cw0.json")
    assert cw0["change"] == pytest.approx(3.0) and cw0["beyond_spread"] is True
    assert cw0["vs_translate_train"] == pytest.approx(5.0) and cw0["no_translation"] == 42.5
    alpha0 = next(r for r in rows if r.get("file") == "ablation-qa-alpha0.json")
    assert alpha0["change"] == pytest.approx(0.5) and alpha0["beyond_spread"] is False
    not_run = {r["lever"] for r in rows if r["run"] is False}
    assert "λ0 0.25 (default 0.5)" in not_run and len(rows) == 2 + 7
    text = report.read_text()
    assert text.startswith("hand text") and text.rstrip().endswith("more hand text")
    assert "old" not in text and "| qa | consistency weight 0 (default 1) | 43.0 ± 0.2" in text
    assert "| +5.0 | 42.5 / 41.5 | 43.1 |" in text  # both fallbacks: self / mixing off
    assert "| 40.5 ± 0.5 (40.0 / 41.0) | +0.5 (within) | +2.5 | – |" in text
    assert (
        "+3.0 |" in text and "+0.5 (within)" in text and 'not run: `--xmixup-args "--mixup' in text
    )


def test_write_report_appends_a_block_to_a_file_without_one(tmp_path: Path) -> None:
    from experiments.report import write_report

    path = tmp_path / "NOTES.md"
    path.write_text("# Notes\n\nkept\n")
    write_report(path, "table", begin="<!-- b -->", end="<!-- e -->")
    assert path.read_text() == "# Notes\n\nkept\n\n<!-- b -->\ntable\n<!-- e -->\n"


def test_levers_signed_change_never_prints_minus_zero() -> None:
    from experiments.levers import _signed

    assert _signed(-0.04) == "0.0" and _signed(0.04) == "0.0"
    assert _signed(-0.06) == "-0.1" and _signed(4.9) == "+4.9"


def test_aligned_vote_moves_only_aligned_words_toward_their_english_word() -> None:
    import numpy as np

    from experiments.aligned_vote import vote, word_distributions

    p_target = np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    p_source = np.array([[0.0, 1.0], [1.0, 0.0]])
    voted = vote(p_target, p_source, [(0, 0), (2, 1)], 0.5)
    np.testing.assert_allclose(voted, [[0.3, 0.7], [0.2, 0.8], [0.75, 0.25]])
    np.testing.assert_array_equal(vote(p_target, p_source, [(0, 0)], 0.0), p_target)
    assert voted.argmax(axis=1).tolist() == [1, 1, 0]  # word 0 flips to the English tag

    logits = np.array([[5.0, 0.0], [0.0, 2.0], [9.0, 9.0]])
    dist = word_distributions(logits, [-1, 0, -1], 2)  # word 1 cut off by truncation
    np.testing.assert_allclose(dist[0], np.exp([0.0, 2.0]) / np.exp([0.0, 2.0]).sum())
    assert np.isnan(dist[1]).all()


def test_aligned_vote_at_weight_zero_is_the_served_evaluation(tmp_path: Path) -> None:
    from experiments.aligned_vote import score_run
    from tests.tiny import make_tiny_checkpoint
    from tests.training._train_data import tag_rows, write_jsonl
    from training.data.noise import SourceNoise
    from training.evaluate import evaluate_records, load_predictor

    labels = ["B-PER", "I-PER", "O", "B-LOC"]
    ckpt = make_tiny_checkpoint(tmp_path, "tag", labels, method="xmixup", mixup_layer=1, seed=3)
    rows = tag_rows(3)
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    res = score_run(ckpt, data, 0.3, layers=[1, 2], weights=[0.0, 1.0])
    served = evaluate_records(
        load_predictor(ckpt), rows, noise=SourceNoise.for_records(rows, "tag", 0.3, seed=0)
    )
    assert res["layer1-w0.0"]["avg"] == pytest.approx(served["avg"])
    assert 0.0 < served["avg"] < 100.0  # a random model: neither all right nor all wrong
    assert res["layer2-w0.0"]["avg"] == res["layer1-w0.0"]["avg"]
    assert 0.0 < res["layer1-w1.0"]["aligned_share"] <= 1.0
