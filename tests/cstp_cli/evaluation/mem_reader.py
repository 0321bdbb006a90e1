"""An in-memory stand-in of ``CacheReader`` shared by the evaluation tests."""

import numpy as np


class MemReader:
    """An in-memory stand-in of CacheReader: frame t of video v has value (v * 10 + t) % 256."""

    def __init__(self, num_frames, labels, wh=(20, 16), splits=None):
        self.num_frames = np.asarray(num_frames, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.frame_wh = wh
        self.folds = [1]
        self._splits = splits or {}

    def split(self, fold, which):
        return np.asarray(self._splits.get(which, []), dtype=np.int64)

    def read(self, video, idx):
        idx = np.asarray(idx)
        assert idx.min() >= 0 and idx.max() < self.num_frames[video]
        w, h = self.frame_wh
        vals = (video * 10 + idx) % 256
        return np.broadcast_to(vals[:, None, None, None], (idx.size, h, w, 3)).astype(np.uint8)
