"""The face pipeline: image IO, detection, alignment, paste-back."""

from nullswap.faces.alignment import align_faces, estimate_similarity, invert_affine, rewarp, warp_affine
from nullswap.faces.detection import Detections, FaceDetector, create_detector, list_detectors
from nullswap.faces.io import LoadedImage, read_image, write_image
from nullswap.faces.pasteback import face_mask, paste_back
from nullswap.faces.templates import AlignmentTemplate, get_template, list_templates

__all__ = [
    "AlignmentTemplate", "Detections", "FaceDetector", "LoadedImage", "align_faces", "create_detector",
    "estimate_similarity", "face_mask", "get_template", "invert_affine", "list_detectors", "list_templates",
    "paste_back", "read_image", "rewarp", "warp_affine", "write_image",
]
