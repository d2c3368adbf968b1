"""Convert a FaceNet model (frozen .pb or checkpoint folder) to ONNX, optionally int8-quantized.

Usage: python src/export_onnx.py model output.onnx [--opset 17] [--image_size 160]
           [--quantize none|int8 --representative DIR [--max_images 64]] [--overwrite]

The graph is converted by tf2onnx from the frozen embedding subgraph: input `input` [N, S, S, 3]
float32 with a free batch dimension, output `embeddings` [N, D]. --quantize int8 then quantizes it
with onnxruntime's static quantization (QDQ format, per-channel int8 weights, uint8 activations
calibrated on the aligned crops of --representative); input and output stay float32, so every tool
feeds it as usual. Needs `pip install tf2onnx onnxruntime onnx`.
"""
import os
import sys
import tempfile

from facenet_tf import files, tf_setup
from facenet_tf.cli import ArgumentParser, command, int_between, positive_int
from facenet_tf.errors import FaceNetError, first_line
from facenet_tf.export_tflite import add_representative_arguments, start_export

DEFAULT_OPSET = 17
INPUT, OUTPUT = 'input', 'embeddings'


def require(name, purpose='exporting to ONNX'):
    """The module `name` of tf2onnx, onnxruntime or onnx; a one-line FaceNetError naming the install
    command when they are missing (`purpose`: what needs them, the message's start)."""
    try:
        return __import__(name, fromlist=['_'])
    except ImportError:
        raise FaceNetError('%s needs tf2onnx, onnxruntime and onnx: pip install tf2onnx onnxruntime onnx (or the '
                           'extra: pip install facenet-tf1compat[onnx])' % purpose)


def export_onnx(model, output_file, image_size=160, opset=DEFAULT_OPSET, use_moving_averages=False):
    """Convert a frozen `.pb` or a checkpoint folder to an ONNX file (input `input` [N, S, S, 3],
    output `embeddings` [N, D], any batch), written atomically; returns its size. use_moving_averages:
    a checkpoint's moving averages instead of its variables."""
    tf_setup.configure()
    from facenet_tf import model_io
    convert = require('tf2onnx.convert')
    graph_def = model_io.frozen_embedding_graph(model, image_size, use_moving_averages)
    try:
        with model_io.quiet_stderr():
            proto, _ = convert.from_graph_def(graph_def, input_names=[INPUT + ':0'], output_names=[OUTPUT + ':0'],
                                              opset=opset)
    except Exception as e:  # tf2onnx raises several unrelated types
        raise FaceNetError('ONNX conversion failed: %s' % first_line(e))
    return _rename_and_write(proto, output_file)


def _rename_and_write(proto, output_file):
    """Name the graph's input and output `input` and `embeddings` (tf2onnx keeps TensorFlow's `:0`),
    mark the batch dimensions free, write atomically; the size."""
    graph = proto.graph
    renames = {graph.input[0].name: INPUT, graph.output[0].name: OUTPUT}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in (graph.input[0], graph.output[0]):
        value.name = renames[value.name]
        value.type.tensor_type.shape.dim[0].dim_param = 'N'
    data = proto.SerializeToString()
    files.write_atomic(output_file, data)
    return len(data)


def _calibration_reader(base, crops):
    """onnxruntime's calibration reader (a subclass of `base`) over standardised crops, one at a time."""
    class Crops(base):
        def __init__(self):
            self.next_index = 0

        def get_next(self):
            if self.next_index >= len(crops):
                return None
            self.next_index += 1
            return {INPUT: crops[self.next_index - 1:self.next_index]}

        def rewind(self):
            self.next_index = 0
    return Crops()


def quantize_onnx(fp32_file, output_file, crops):
    """Static int8 quantization of an ONNX file (QDQ, per-channel int8 weights, uint8 activations
    calibrated by min/max on `crops`), written atomically; returns its size."""
    tf_setup.configure()
    from facenet_tf.model_io import quiet_stderr
    quantization = require('onnxruntime.quantization')
    reader = _calibration_reader(quantization.CalibrationDataReader, crops)
    work = tempfile.mkdtemp(prefix='.facenet_onnx_', dir=os.path.dirname(os.path.abspath(output_file)))
    try:
        prepared, quantized = os.path.join(work, 'prepared.onnx'), os.path.join(work, 'int8.onnx')
        try:
            with quiet_stderr():
                quantization.quant_pre_process(fp32_file, prepared, skip_symbolic_shape=True)
                quantization.quantize_static(prepared, quantized, reader, quant_format=quantization.QuantFormat.QDQ,
                                             per_channel=True, activation_type=quantization.QuantType.QUInt8,
                                             weight_type=quantization.QuantType.QInt8)
        except Exception as e:  # onnxruntime's quantizer raises several unrelated types
            raise FaceNetError('ONNX int8 quantization failed: %s' % (str(e).strip().splitlines() or
                                                                       [type(e).__name__])[0])
        with open(quantized, 'rb') as f:
            data = f.read()
        files.write_atomic(output_file, data)
        return len(data)
    finally:
        for name in os.listdir(work):
            os.remove(os.path.join(work, name))
        os.rmdir(work)


def main(args):
    crops = start_export(args)
    if crops is None:
        size = export_onnx(args.model, args.output_file, args.image_size, args.opset)
    else:
        work = tempfile.mkdtemp(prefix='.facenet_onnx_', dir=os.path.dirname(os.path.abspath(args.output_file)))
        fp32 = os.path.join(work, 'fp32.onnx')
        try:
            export_onnx(args.model, fp32, args.image_size, args.opset)
            size = quantize_onnx(fp32, args.output_file, crops)
        finally:
            if os.path.exists(fp32):
                os.remove(fp32)
            os.rmdir(work)
    print('wrote %s (%.1f MB, opset %d, %s): input [N, %d, %d, 3] -> embeddings'
          % (args.output_file, size / 1e6, args.opset, 'int8 QDQ, calibrated on %d crops' % len(crops)
             if crops is not None else 'fp32', args.image_size, args.image_size))
    return 0


def parse_arguments(argv):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('model', type=str, help='A frozen model (.pb) or a checkpoint folder')
    parser.add_argument('output_file', type=str, help='The .onnx file to write')
    parser.add_argument('--image_size', type=positive_int, default=160, help='Input image size in pixels.')
    parser.add_argument('--opset', type=int_between(13, 21), default=DEFAULT_OPSET,
                        help='The ONNX opset to convert to (default %d).' % DEFAULT_OPSET)
    parser.add_argument('--quantize', choices=('none', 'int8'), default='none',
                        help='int8: static QDQ quantization with onnxruntime, calibrated on --representative.')
    add_representative_arguments(parser)
    files.add_overwrite_argument(parser, 'the output .onnx file')
    return parser.parse_args(argv)


def console_main():
    """The `facenet-export-onnx` command (also `python -m facenet_tf.export_onnx`)."""
    return command(main, parse_arguments)


if __name__ == '__main__':
    sys.exit(console_main())
