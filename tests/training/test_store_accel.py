"""Accelerometer windows in the store: kept for records that have them, by the runtime's own
accel preprocessing; stores without them still load and a model input that needs them is
refused with one line or fed zeros (a still wrist)."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.accel import accel_windows
from training.data import readers
from training.data.dataset import WindowDataset
from training.data.store import WindowStore
from training.data.synthetic_wrist import ACCEL_AXES


def test_store_keeps_the_runtime_accel_windows(wrist_store):
    st = WindowStore(wrist_store)
    assert st.has_accel
    acc = st.column("accel")
    assert acc.shape == (len(st), 3, st.spec.ppg_len) and acc.dtype == np.float16
    # the first record's windows equal edge_runtime.accel on the reader's own record
    unit = readers.discover("synthetic-wrist", "subjects=4,minutes=1,seed=2")[0]
    rec = readers.read_unit("synthetic-wrist", unit)[0]
    starts = st.column("start_s")[np.array(st.subject_ids()) == rec.subject_id]
    want, miss = accel_windows(np.stack([rec.signals[a].data for a in ACCEL_AXES]),
                               rec.signals[ACCEL_AXES[0]].fs, st.spec, starts)
    got = acc[np.array(st.subject_ids()) == rec.subject_id].astype(np.float32)
    assert not miss.any()
    np.testing.assert_allclose(got, want, atol=1e-2 * max(1.0, np.abs(want).max()))
    assert np.abs(got).max() > 0.1                    # the synthetic wearer moves
    item = WindowDataset(wrist_store, None, with_accel="require")[0]
    assert item["accel"].shape == (3, st.spec.ppg_len)


def test_store_without_accel_loads_and_refuses_or_reads_zeros(qstore):
    st = WindowStore(qstore)
    assert not st.has_accel and len(st) > 0
    with pytest.raises(ValueError, match="no accelerometer"):
        st.column("accel")
    with pytest.raises(ValueError) as e:
        WindowDataset(qstore, "train", with_accel="require")
    assert "\n" not in str(e.value) and str(qstore) in str(e.value)
    item = WindowDataset(qstore, "train", with_accel="zeros")[0]
    assert item["accel"].shape == (3, st.spec.ppg_len) and not item["accel"].any()
    assert "accel" not in WindowDataset(qstore, "train")[0]
