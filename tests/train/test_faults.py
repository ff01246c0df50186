"""Injected faults of the trainer (issue 13): each stops with a one-line error naming the value, loses nothing.

Covered: empty/typo'd/zero-length/unreadable shards (a run that never ends), a NaN stop after a finite
checkpoint, unknown or wrongly typed config keys, the resume policy, exact resume of streaming stage-1
training (with workers), a full disk during a checkpoint save and a non-finite checkpoint on resume.
"""
from __future__ import annotations

import errno
import signal
import time

import pytest
import torch

import tests.helpers.fake_data  # noqa: F401  (registered before the registry snapshots)
import tests.train.fault_helpers  # noqa: F401
from farslip_ext.data import synthetic as syn
from farslip_ext.errors import CheckpointFormatError, ConfigError, DataError, FarSLIPError, NonFiniteWeightsError
from farslip_ext.train.config import load_config
from farslip_ext.train.loop import NonFiniteLossError, Trainer
from tests.train.fault_helpers import finite, run_cli, weights, write_config

STAGE1 = ("dict(global_itc=dict(type='GlobalITCLoss'), "
          "distill=dict(type='PatchDistillLoss', loss_weight=0.1))")


@pytest.fixture(scope="module")
def rs5m(tmp_path_factory):
    out = tmp_path_factory.mktemp("rs5m")
    syn.write_rs5m_shards(out, 24, shard_size=6, seed=5, size=64)
    return out


def _rs5m_data(folder, pattern="synthetic-train-{0000..0003}.tar", extra=""):
    return f"dict(type='KillingRS5M', urls=r'{folder}/{pattern}', image_size=64, shuffle_buffer=8, shuffle_initial=4{extra})"


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and "Traceback" not in text, text
    return text


# ---------------------------------------------------------------------------------------- 1. never-ending runs
def test_a_typo_in_the_shard_url_is_a_data_error_naming_it_and_the_close_match(tmp_path, rs5m):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", steps_per_epoch=3,
                       data=_rs5m_data(rs5m, "synthetic-trian-{0000..0003}.tar"))
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        Trainer(load_config(cfg))
    msg = _one_line(e.value)
    assert time.perf_counter() - t0 < 60
    assert "synthetic-trian-{0000..0003}.tar" in msg and "4 missing" in msg
    assert "synthetic-train-0000.tar" in msg  # the close match on disk
    # through the CLI: exit code 2 and the message, not a traceback
    out = run_cli("train", str(cfg), timeout=240)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "synthetic-trian" in out.stderr and "Traceback" not in out.stderr


def test_zero_length_shards_are_a_data_error(tmp_path):
    for i in range(2):
        (tmp_path / f"empty-{i:04d}.tar").write_bytes(b"")
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", steps_per_epoch=3,
                       data=_rs5m_data(tmp_path, "empty-{0000..0001}.tar"))
    with pytest.raises(DataError, match=r"empty-\{0000..0001\}.tar.*2 empty, 0 bytes"):
        Trainer(load_config(cfg))


def _unreadable_shards(folder, n=2):
    """Shards whose samples all lack the caption member (a layout with another key name)."""
    import webdataset as wds

    for s in range(n):
        with wds.TarWriter(str(folder / f"bad-{s:04d}.tar"), encoder=False, mtime=0.0) as tw:
            for i in range(3):
                tw.write({"__key__": f"{s}{i:07d}", "jpg": b"not an image", "txt": b"a caption"})


@pytest.mark.parametrize("workers", [0, 2])
def test_shards_of_unreadable_samples_stop_in_the_first_epoch_naming_shards_and_counts(tmp_path, workers):
    _unreadable_shards(tmp_path)
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", steps_per_epoch=3, num_workers=workers,
                       data=_rs5m_data(tmp_path, "bad-{0000..0001}.tar"))
    tr = Trainer(load_config(cfg))
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        tr.fit()
    msg = _one_line(e.value)
    assert time.perf_counter() - t0 < 60
    assert "gave no batch" in msg and "epoch 0" in msg and "0 readable samples of 6 read" in msg
    assert "bad-0000.tar" in msg and "bad-0001.tar" in msg and "skipped_missing=6" in msg
    assert "jpg" in msg  # the members the shard does hold
    assert not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()


def test_a_long_run_of_unreadable_samples_stops_at_max_skip(tmp_path):
    _unreadable_shards(tmp_path)
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", steps_per_epoch=3,
                       data=_rs5m_data(tmp_path, "bad-{0000..0001}.tar", ", max_skip=4"))
    with pytest.raises(DataError, match=r"4 samples in a row were unreadable .*bad-000[01].tar"):
        Trainer(load_config(cfg)).fit()


def test_a_shard_that_is_not_a_tar_file_is_counted_and_named(tmp_path):
    (tmp_path / "junk-0000.tar").write_bytes(b"this is not a tar archive" * 40)
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", steps_per_epoch=3,
                       data=_rs5m_data(tmp_path, "junk-{0000..0000}.tar", ", require_enough_shards=False"))
    with pytest.raises(DataError, match=r"no sample could be read.*junk-0000.tar.*shard_errors=1"):
        Trainer(load_config(cfg)).fit()


# ---------------------------------------------------------------------------------------- 2. NaN stop
def test_a_nan_after_a_finite_checkpoint_keeps_it_and_the_advice_resumes(tmp_path, monkeypatch):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", save_every=2)
    tr = Trainer(load_config(cfg))
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    real_step = tr.train_step

    def poisoned(batch):  # step 3 (index) corrupts the weights through an "update"; the loss of step 4 is NaN
        out = real_step(batch)
        if tr.step == 2:
            with torch.no_grad():
                tr.model.visual.conv1.weight.fill_(float("nan"))
        return out

    monkeypatch.setattr(tr, "train_step", poisoned)
    with pytest.raises(NonFiniteLossError) as e:
        tr.fit()
    msg = _one_line(e.value)
    st = torch.load(latest, weights_only=True)
    assert st["step"] == 2 and finite(st["state_dict"])  # the finite latest was not overwritten
    assert "visual.conv1.weight" in msg and f"{latest} (step 2), is kept" in msg and "--resume" in msg
    assert not (tmp_path / "run" / "checkpoints" / "final.pt").exists()
    # the advice: resume from it (the default) with a lower lr — the run completes, finite
    lr = float(msg.split("optim.lr=")[1].split()[0])
    done = Trainer(load_config(cfg, {"optim.lr": lr}))
    assert done.fit()["step"] == 8
    final = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    assert finite(final["state_dict"]) and final["config"]["optim"]["lr"] == lr


def test_a_non_finite_optimizer_state_is_never_saved(tmp_path, monkeypatch):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", save_every=2)
    tr = Trainer(load_config(cfg))
    real_step = tr.train_step

    def poisoned(batch):
        out = real_step(batch)
        if tr.step == 3:  # the loss stays finite, but an Adam moment is inf before the save of step 4
            st = next(iter(tr.optimizer.state.values()))
            st["exp_avg_sq"].fill_(float("inf"))
        return out

    monkeypatch.setattr(tr, "train_step", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"optimizer exp_avg_sq of .*latest.pt was not written") as e:
        tr.fit()
    assert "(step 2), is kept" in _one_line(e.value)
    assert torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)["step"] == 2


def test_nan_data_fixed_then_resume_by_the_message(tmp_path):
    marker = tmp_path / "nan"
    marker.touch()
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0)).tolist()
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", save_every=100,
                       data=f"dict(type='MarkedNaNData', n=16, stage=0, nan_at={perm[9]}, nan_marker=r'{marker}')")
    out = run_cli("train", str(cfg), timeout=240)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "non-finite loss at step 2" in out.stderr and "Traceback" not in out.stderr
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    assert str(latest) in out.stderr and torch.load(latest, weights_only=True)["step"] == 2
    marker.unlink()  # "check its data"; then resume as advised (train.resume=auto)
    again = run_cli("train", str(cfg), timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert finite(weights(tmp_path / "run" / "checkpoints" / "final.pt"))


# ---------------------------------------------------------------------------------------- 3. config keys
@pytest.mark.parametrize("option,match", [
    ({"optim.lrr": 0.5}, r"unknown config key optim.lrr \(from --cfg-options optim.lrr=0.5\) \(did you mean 'optim.lr'"),
    ({"train.save_evry_steps": 1}, r"unknown config key train.save_evry_steps .*did you mean 'train.save_every_steps'"),
    ({"trian.seed": 1}, r"unknown config key 'trian' .*did you mean 'train'"),
    ({"task.losses.global_itc.temprature": 1.0}, r"task.losses.global_itc \(GlobalITCLoss\) has no argument 'temprature'"),
    ({"data.train.nn": 16}, r"data.train \(FakeFarSLIPData\) has no argument 'nn' \(did you mean 'n'"),
    ({"data.train.n": "16"}, r"data.train.n='16' \(FakeFarSLIPData\): expected an integer, got str"),
    ({"train.log_every": "10"}, r"train.log_every='10' .*expected an integer >= 1, got str"),
    ({"train.log_every": 0}, r"train.log_every=0 .*expected an integer >= 1 \(an interval"),
    ({"train.save_every_steps": -5}, r"train.save_every_steps=-5 .*expected an integer >= 1"),
    ({"schedule.max_steps": 0}, r"schedule.max_steps=0 .*expected None or an integer >= 1"),
    ({"schedule.epochs": -1}, r"schedule.epochs=-1 .*expected an integer >= 1"),
    ({"data.batch_size": 0}, r"data.batch_size=0 .*expected an integer >= 1"),
    ({"optim.lr": "1e-3"}, r"optim.lr='1e-3' .*expected a number > 0, got str"),
])
def test_bad_config_options_are_one_line_errors(tmp_path, option, match):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run")
    with pytest.raises(ConfigError, match=match) as e:
        load_config(cfg, option)
    _one_line(e.value)


def test_a_typo_in_the_config_file_is_an_error_naming_the_file(tmp_path):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", extra_train=", save_evry_steps=1")
    with pytest.raises(ConfigError, match=r"train.save_evry_steps \(from the config file .*cfg.py\).*save_every_steps"):
        load_config(cfg)
    cfg = write_config(tmp_path / "cfg2.py", tmp_path / "run",
                       losses="dict(global_itc=dict(type='GlobalITCLoss', locl_loss=True))")
    with pytest.raises(ConfigError, match=r"task.losses.global_itc \(GlobalITCLoss\) has no argument 'locl_loss'"):
        load_config(cfg)


def test_cli_typo_exits_2_naming_the_key(tmp_path):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run")
    out = run_cli("train", str(cfg), "--cfg-options", "optim.lrr=0.5", timeout=240)
    assert out.returncode == 2 and "optim.lrr" in out.stderr and "optim.lr'" in out.stderr, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------- 4. resume policy
def _half_run(tmp_path, **kw):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", **kw)
    Trainer(load_config(cfg, {"schedule.max_steps": 3})).fit()  # stopped early: latest.pt at step 3
    return cfg


def test_resume_applies_and_reports_a_new_lr_and_saves_the_effective_config(tmp_path, caplog):
    cfg = _half_run(tmp_path)
    tr = Trainer(load_config(cfg, {"optim.lr": 5e-4}))
    with caplog.at_level("WARNING", logger="farslip_ext.train.loop"):
        tr.resume(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert "applied from this step on" in caplog.text and "optim.lr 0.001 -> 0.0005" in caplog.text
    assert "schedule.max_steps 3 -> None" in caplog.text
    assert tr.step == 3 and tr.scheduler.base_lrs[0] == 5e-4
    expected = 5e-4 * tr.scheduler.lr_lambdas[0](3)
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    tr.fit()
    st = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    assert st["config"]["optim"]["lr"] == 5e-4 and st["step"] == 8
    assert st["resume_changes"][0]["changes"]["optim.lr"] == [1e-3, 5e-4]
    assert "lr=0.0005" in (tmp_path / "run" / "checkpoints" / "config.py").read_text()


@pytest.mark.parametrize("option,key", [({"data.batch_size": 2}, "data.batch_size 4 -> 2"),
                                        ({"train.seed": 1}, "train.seed 0 -> 1"),
                                        ({"data.train.n": 24}, "data.train.n 16 -> 24")])
def test_resume_refuses_what_breaks_exactness_unless_allowed(tmp_path, option, key):
    cfg = _half_run(tmp_path)
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    before = latest.read_bytes()
    with pytest.raises(ConfigError, match="break the exact resume") as e:
        Trainer(load_config(cfg, option)).resume(latest)
    msg = _one_line(e.value)
    assert key in msg and "train.resume_allow_changes" in msg
    assert latest.read_bytes() == before
    allowed = Trainer(load_config(cfg, {**option, "train.resume_allow_changes": [next(iter(option))]}))
    allowed.resume(latest)
    assert allowed.step == 3
    if "data.batch_size" in option:
        assert allowed.batch_in_epoch == 6  # 3 batches of 4 = 12 samples seen, now batches of 2


def test_cli_refuses_a_changed_batch_size_on_resume_unless_allowed(tmp_path, capsys):
    from farslip_ext.cli import main

    cfg = _half_run(tmp_path)
    assert main(["train", str(cfg), "--cfg-options", "data.batch_size=2"]) == 2
    err = capsys.readouterr().err
    assert "data.batch_size 4 -> 2" in err and "train.resume_allow_changes" in err
    assert "Traceback" not in err
    assert torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)["step"] == 3
    assert main(["train", str(cfg), "--cfg-options", "data.batch_size=2", "--resume-allow-changes",
                 "data.batch_size"]) == 0
    st = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    assert st["step"] == 16 and st["config"]["data"]["batch_size"] == 2
    assert st["resume_changes"][-1]["changes"]["data.batch_size"] == [4, 2]


def test_resume_with_another_architecture_is_one_line(tmp_path):
    cfg = _half_run(tmp_path)
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    other = load_config(cfg, {"model.name": "farslip-test-tiny-long"})
    with pytest.raises(ConfigError, match=r"model.name 'farslip-test-tiny' -> 'farslip-test-tiny-long'") as e:
        Trainer(other).resume(latest)
    _one_line(e.value)
    allowed = Trainer(load_config(cfg, {"model.name": "farslip-test-tiny-long", "train.resume_allow_changes": ["model"]}))
    with pytest.raises(CheckpointFormatError, match=r"weights of 'farslip-test-tiny' that do not fit") as e:
        allowed.resume(latest)
    _one_line(e.value)


# ---------------------------------------------------------------------------------------- 5. exact streaming resume
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_resume_of_streaming_stage1_is_bit_exact(tmp_path, rs5m, workers):
    marker = tmp_path / "killed"
    common = dict(losses=STAGE1, steps_per_epoch=5, epochs=2, num_workers=workers, save_every=1,
                  extra_train=", keep_step_checkpoints=True")
    ref = write_config(tmp_path / "ref.py", tmp_path / "ref", data=_rs5m_data(rs5m), **common)
    # killed in epoch 1 (steps 6..10) when step 7 is checkpointed and batch 2 of the epoch is being read:
    # in-process, at its 2nd sample; with 2 workers, in worker 0 (batches 0, 2, 4) at its 5th sample
    ckpts = tmp_path / "run" / "checkpoints"
    kill = (f", kill_epoch=1, kill_after=10, kill_marker=r'{marker}'" if workers == 0 else
            f", kill_epoch=1, kill_after=5, kill_marker=r'{marker}', kill_when=r'{ckpts / 'step_00000007.pt'}'")
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run", **common, data=_rs5m_data(rs5m, extra=kill))
    first = run_cli("train", str(cfg), timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    st = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert (st["step"], st["epoch"], st["batch_in_epoch"]) == (7, 1, 2), first.stderr[-3000:]
    second = run_cli("train", str(cfg), timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert run_cli("train", str(ref), timeout=300).returncode == 0
    a, b = weights(tmp_path / "run" / "checkpoints" / "final.pt"), weights(tmp_path / "ref" / "checkpoints" / "final.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------- full disk, finite resume
def test_a_full_disk_during_a_save_removes_the_partial_file_and_keeps_latest(tmp_path, monkeypatch):
    cfg = write_config(tmp_path / "cfg.py", tmp_path / "run")
    tr = Trainer(load_config(cfg, {"schedule.max_steps": 2}))
    tr.fit()
    ck = tmp_path / "run" / "checkpoints"
    before = (ck / "latest.pt").read_bytes()

    def full_disk(obj, f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"no space left on the device while writing .*latest.pt") as e:
        tr.save("latest.pt")
    assert e.value.errno == errno.ENOSPC and str(ck / "latest.pt") in str(e.value)
    monkeypatch.undo()
    assert (ck / "latest.pt").read_bytes() == before
    assert sorted(p.name for p in ck.iterdir()) == ["config.py", "final.pt", "latest.pt"]


def test_resume_from_a_non_finite_or_truncated_checkpoint_names_it(tmp_path):
    cfg = _half_run(tmp_path)
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    st = torch.load(latest, weights_only=True)
    st["state_dict"]["visual.proj"][0, 0] = float("inf")
    bad = tmp_path / "bad.pt"
    torch.save(st, bad)
    with pytest.raises(NonFiniteWeightsError, match=r"bad.pt: 1 tensor\(s\) hold NaN or infinite values "
                                                    r"\(state_dict.visual.proj\)") as e:
        Trainer(load_config(cfg)).resume(bad)
    assert "train.resume=" in _one_line(e.value)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(latest.read_bytes()[:5000])
    with pytest.raises(CheckpointFormatError, match=r"cannot read the training checkpoint .*cut.pt"):
        Trainer(load_config(cfg)).resume(cut)
    assert issubclass(NonFiniteWeightsError, FarSLIPError)
