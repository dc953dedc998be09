"""Read a TensorBoard log directory with TensorBoard's own readers and print what they see as JSON.

    python read_tb.py LOGDIR

Scalars and images come from the EventAccumulator (with restart purging, as TensorBoard applies
it); images are decoded with Pillow. The hyperparameters come from the data provider that
TensorBoard's HParams dashboard reads (list_tensors for the "hparams" plugin), parsed with the
plugin's own protobuf. Used by norbvae's tests (tests/tensorboard.rs); needs the venv made by
scripts/tb_venv.sh.
"""
import hashlib
import io
import json
import sys

from PIL import Image
from tensorboard.backend.event_processing import data_provider, event_accumulator
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins.hparams import plugin_data_pb2


def hparams(logdir):
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    ctx = None
    try:
        from tensorboard import context

        ctx = context.RequestContext()
    except ImportError:
        pass
    out = {}
    series = provider.list_tensors(ctx, experiment_id="", plugin_name="hparams")
    for run, tags in series.items():
        for tag, ts in tags.items():
            data = plugin_data_pb2.HParamsPluginData.FromString(ts.plugin_content)
            kind = data.WhichOneof("data")
            entry = {"kind": kind, "run": run}
            if kind == "session_start_info":
                vals = {}
                for k, v in data.session_start_info.hparams.items():
                    which = v.WhichOneof("kind")
                    vals[k] = getattr(v, which)
                entry["hparams"] = vals
            elif kind == "session_end_info":
                entry["status"] = data.session_end_info.status
            out[tag] = entry
    return out


def main():
    logdir = sys.argv[1]
    acc = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    )
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]}
    images = {}
    for t in tags["images"]:
        images[t] = []
        for e in acc.Images(t):
            img = Image.open(io.BytesIO(e.encoded_image_string))
            img.load()
            images[t].append(
                {
                    "step": e.step,
                    "width": e.width,
                    "height": e.height,
                    "format": img.format,
                    "decoded_width": img.size[0],
                    "decoded_height": img.size[1],
                    "rgb_md5": hashlib.md5(img.convert("RGB").tobytes()).hexdigest(),
                }
            )
    json.dump({"scalars": scalars, "images": images, "hparams": hparams(logdir)}, sys.stdout)


if __name__ == "__main__":
    main()
