"""Constants shared by data, transforms, losses and handlers: the per-frame label-source codes.

Every frame of a training video has a source: no label, the expert's ground truth, or a
teacher's pseudo-label (stage 2). The clip sampler, the source-dependent augmentation, the
eq. 4 loss and the pseudo-label writer all read these codes, so they are defined once here.
"""

from __future__ import annotations

__all__ = ["SOURCE_GT", "SOURCE_NONE", "SOURCE_PSEUDO"]

#: No label on this frame (it only reaches the network as an unlabelled clip frame or STCS triplet).
SOURCE_NONE = 0
#: An expert's mask (a ``labelled_frames`` entry).
SOURCE_GT = 1
#: A teacher's pseudo-label from quadro-inference.
SOURCE_PSEUDO = 2
