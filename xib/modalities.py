"""The four modalities, in the order every table lists them. `pc` is a 3D point cloud (cue " 3d: ")."""

MODALITIES = ("image", "pc", "audio", "video")
