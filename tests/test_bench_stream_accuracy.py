"""benchmarks.bench_stream_accuracy.seen_subjects: the Liu patients a student trained or was
selected on are found through its run manifests (and only those), so the runtime's Liu AUROC
can leave them out."""
import json

from benchmarks.bench_stream_accuracy import seen_subjects


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def chain(tmp_path, mix):
    write(tmp_path / "liu" / "index.json", {"source": "liu2022", "split_subjects": {
        "train": ["a", "b"], "val": ["c"], "test": ["d"]}})
    write(tmp_path / "bidmc" / "index.json", {"source": "bidmc", "split_subjects": {"train": ["x"]}})
    write(tmp_path / "syn" / "index.json", {"source": "synthetic-wrist", "split_subjects": {"train": ["s"]}})
    write(tmp_path / "distill" / "manifest.json", {
        "inputs": {"store_index": {"path": str(tmp_path / "syn" / "index.json")}},
        "config": {"mix": mix}})
    write(tmp_path / "qat" / "manifest.json", {"inputs": {"distill_checkpoint": {
        "path": str(tmp_path / "distill" / "checkpoints" / "latest.pt")}}})
    write(tmp_path / "export" / "model_int8.json", {"source_qat_run": str(tmp_path / "qat")})
    return tmp_path / "export"


def test_train_and_val_patients_of_a_mixed_in_store(tmp_path):
    export = chain(tmp_path, [f"{tmp_path / 'bidmc'}:0.2", f"{tmp_path / 'liu'}:0.1"])
    assert seen_subjects(export, "liu2022") == {"a", "b", "c"}       # never the test patient
    assert seen_subjects(export, "bidmc") == {"x"}
    assert seen_subjects(export, "synthetic-wrist") == {"s"}           # its own store too


def test_no_mix_or_a_broken_chain_excludes_nobody(tmp_path):
    export = chain(tmp_path, None)
    assert seen_subjects(export, "liu2022") == set()
    (tmp_path / "qat" / "manifest.json").unlink()
    assert seen_subjects(export, "synthetic-wrist") == set()
    assert seen_subjects(tmp_path / "nowhere", "liu2022") == set()
