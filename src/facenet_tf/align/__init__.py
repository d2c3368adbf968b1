"""Face detection and alignment: MTCNN (detect_face: the classic functions and the batched MTCNN
object; mtcnn_boxes: box arithmetic; mtcnn_weights: reading the weight files without running them),
crops and landmark warps (aligner, landmarks), and aligning a whole dataset folder
(dataset_alignment; the `facenet-align` tool is align_dataset_mtcnn)."""
