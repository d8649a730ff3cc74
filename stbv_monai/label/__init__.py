"""MONAI Label app: two-shot annotation of breast-ultrasound videos with mask propagation.

Start it with ``monailabel start_server --app stbv_monai/label --studies DIR`` (see ``README.md``
in this folder). ``main.py`` is the file MONAI Label loads; the app itself is
:class:`stbv_monai.label.label_app.STBVLabelApp`.

Modules (only those marked * import MONAI Label, so the rest work without it):

* ``app_config``: the ``--conf`` keys and where model files live.
* ``model_store``: the network ``propagate`` serves, reloaded when its file changes.
* ``references``: which frames of a label are references (painted, explicit, or corrections).
* ``frame_selection``: which video to annotate next and which two frames to paint.
* ``result_io``: read the request's video and label, write the result with the video's geometry.
* ``import_videos``: convert MP4/DICOM/frame folders into the NIfTI 2D+t datastore layout.
* ``safe_names``: which video ids and label tags may reach the file system.
* ``propagate_task`` *, ``two_shot_train`` *, ``frame_strategy`` *, ``video_datastore`` *,
  ``http_errors`` *, ``label_app`` *: the MONAI Label tasks, datastore and app.
* ``uploads`` *: the server's upload size limit and removal of every upload's temporary file.

Nothing is imported here, so ``python -m stbv_monai.label.import_videos`` stays light.
"""

from __future__ import annotations
