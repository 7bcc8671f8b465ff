"""What each stream's capture process costs (issue 26): a motion-JPEG file's frames go on the bus as the
file's own JPEGs, not decoded here (FRAME_ENCODING=auto), and other frames' pixels without a copy (the
payload is a view of the image the source decoded); the frames that arrive are still the file's frames,
byte for byte, however many wait in the queues before the consumer reads them; a capture process loads
only what it uses."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import zmq

from services.capture.service import FILE_PREVIEW_HWM, CaptureService
from shared.ops.config import REPO_ROOT
from tests.harness import Peer
from tests.support.capture import played, start_capture
from tests.support.links import link
from tools.footage import write_video


def _numbered_video(path, frames: int) -> str:
    """An MJPG file whose every frame differs: its number written on a shifting gradient."""
    ramp = np.tile(np.arange(320, dtype=np.uint8), (240, 1))
    images = []
    for i in range(frames):
        image = np.ascontiguousarray(np.dstack([np.roll(ramp, 7 * i, axis=1), ramp, ramp]))
        cv2.putText(image, str(i), (100, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 5)
        images.append(image)
    write_video(path, images, 10.0)
    return str(path)


def _payload_of(image: np.ndarray, encoding: str = "bgr") -> tuple[str, bytes | memoryview]:
    holder = SimpleNamespace(settings=SimpleNamespace(frame_encoding=encoding))
    return CaptureService._payload(holder, image)  # type: ignore[arg-type]


def test_a_bgr_payload_is_the_image_itself_not_a_copy():
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
    encoding, payload = _payload_of(image)
    sent = np.frombuffer(payload, np.uint8)
    assert encoding == "bgr"
    assert np.shares_memory(sent, image)  # tobytes() made a 0.9 MB copy of every 640x480 frame
    assert bytes(payload) == image.tobytes() and len(payload) == image.nbytes


def test_a_strided_image_is_sent_as_its_pixels_in_order():
    # A view into a bigger image (a crop, a BGRA grab without its alpha) is not contiguous: copied once.
    bgra = np.random.default_rng(2).integers(0, 256, (30, 40, 4), np.uint8)
    bgr = bgra[:, :, :3]
    _, payload = _payload_of(bgr)
    assert bytes(payload) == np.ascontiguousarray(bgr).tobytes() and len(payload) == 30 * 40 * 3


def test_jpeg_payload_still_decodes():
    image = np.full((48, 64, 3), 128, np.uint8)
    encoding, payload = _payload_of(image, "jpeg")
    decoded = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    assert encoding == "jpeg" and decoded.shape == image.shape


def _file_frames(path: str, raw: bool = False) -> list[np.ndarray]:
    """Every frame of the file, decoded by FFmpeg, or (raw) as the file holds it (a JPEG's bytes)."""
    cap = cv2.VideoCapture(path)
    if raw:
        assert cap.set(cv2.CAP_PROP_FORMAT, -1)
    frames = []
    while (read := cap.read())[0]:
        frames.append(read[1].reshape(-1) if raw else read[1])
    cap.release()
    return frames


def test_every_frame_arrives_as_the_file_decodes_it_while_frames_queue(tmp_path):
    # Sent without a copy, a frame's buffer is on the wire until ZeroMQ has sent it: a source that
    # reused its buffer would overwrite the frames still queued. The consumer reads late, so the
    # queues are full while the capture decodes on (raw pixels: FRAME_ENCODING=bgr).
    path = _numbered_video(tmp_path / "numbered.avi", frames=20)
    decoded = _file_frames(path)
    assert len({im.tobytes() for im in decoded}) == len(decoded)  # every frame differs from the others
    frames = played(path, "--fps", "0", "--frame-encoding", "bgr", read_after=1.5)[:-1]
    assert len(frames) == len(decoded)
    for message, image in zip(frames, decoded, strict=True):
        assert (message.header.height, message.header.width) == image.shape[:2]
        assert bytes(message.payload) == image.tobytes(), f"frame {message.header.seq} is not the file's"


def test_a_motion_jpeg_files_frames_go_on_as_its_own_jpegs_while_frames_queue(tmp_path):
    # FRAME_ENCODING=auto: an MJPG file's frames are not decoded in the capture; each
    # payload is the file's own JPEG, byte for byte (zero-copy here too: queued, none is overwritten),
    # and decodes to the frame FFmpeg decodes, within the two JPEG decoders' rounding.
    path = _numbered_video(tmp_path / "numbered.avi", frames=20)
    packets, decoded = _file_frames(path, raw=True), _file_frames(path)
    frames = played(path, "--fps", "0", "--frame-encoding", "auto", read_after=1.5)[:-1]
    assert len(frames) == len(packets) == len(decoded)
    for message, packet, image in zip(frames, packets, decoded, strict=True):
        assert message.header.encoding == "jpeg" and (message.header.height, message.header.width) == image.shape[:2]
        assert bytes(message.payload) == packet.tobytes(), f"frame {message.header.seq} is not the file's JPEG"
        pixels = cv2.imdecode(np.frombuffer(message.payload, np.uint8), cv2.IMREAD_COLOR)
        assert np.abs(pixels.astype(np.int16) - image).mean() < 2.0
    assert sum(len(m.payload) for m in frames) < sum(im.nbytes for im in decoded) / 5  # what the link carries


def test_a_file_played_as_fast_as_the_pipeline_allows_keeps_its_preview_frames_for_a_late_reader(tmp_path):
    # Its own JPEGs leave in bursts (nothing is decoded here): with the common queue of 4, PUB dropped
    # what did not fit before ZeroMQ had written it out, and a recording lost the last 2 of its 6 frames.
    rng = np.random.default_rng(3)
    noise = [rng.integers(0, 256, (240, 320, 3), np.uint8) for _ in range(48)]  # ~60 KB a JPEG: few fit a buffer
    path = write_video(tmp_path / "noise.avi", noise, 10.0)["path"]
    preview_out, _, preview_endpoint = link("preview")
    viewer = Peer(zmq.SUB, preview_endpoint, bind=False, hwm=1)  # subscribed before the first frame ...
    proc, consumer = start_capture(str(path), "--fps", "0", preview_out=preview_out, consumer_after=3.0)
    try:
        frames = consumer.recv_until_eos()[:-1]  # ... facedetect keeps up, the preview's reader reads later
        previews = []
        while viewer.socket.poll(2000):
            previews.append(viewer.recv())
        assert proc.wait(20) == 0, proc.stderr.read()
    finally:
        proc.kill()
        consumer.close()
        viewer.socket.close()
    assert len(frames) == len(noise) and all(m.header.encoding == "jpeg" for m in frames)
    assert len(previews) >= FILE_PREVIEW_HWM, len(previews)
    assert [m.header.seq for m in previews] == sorted({m.header.seq for m in previews})


def test_a_motion_jpeg_file_larger_than_the_bound_is_decoded_and_scaled(tmp_path):
    # A JPEG the bound would scale cannot travel as it is: decoded, scaled to fit, sent as pixels.
    path = _numbered_video(tmp_path / "numbered.avi", frames=4)  # 320x240
    frames = played(path, "--fps", "0", "--width", "160", "--height", "160", "--frame-encoding", "auto")[:-1]
    assert len(frames) == 4
    assert all(m.header.encoding == "bgr" and (m.header.width, m.header.height) == (160, 120)
               and len(m.payload) == 160 * 120 * 3 for m in frames)


def test_a_file_that_is_not_motion_jpeg_is_decoded_in_the_capture(tmp_path):
    from services.capture.sources import FileSource

    path = str(tmp_path / "mp4v.mp4")
    ramp = np.tile(np.arange(320, dtype=np.uint8), (240, 1))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for i in range(5):
        writer.write(np.ascontiguousarray(np.dstack([np.roll(ramp, 7 * i, axis=1), ramp, ramp])))
    writer.release()
    source = FileSource(path, keep_jpeg=True)
    try:
        frame = source.read()
        assert not source.jpeg and frame is not None and frame.jpeg is None and frame.image.shape == (240, 320, 3)
    finally:
        source.release()


def test_a_motion_jpeg_whose_frames_carry_no_tables_is_decoded_in_the_capture(tmp_path):
    # Some cameras' MJPEG leaves out the standard Huffman tables: FFmpeg supplies them, a JPEG
    # decoder elsewhere would not, so such a file is decoded where FFmpeg reads it.
    from services.capture.sources import FileSource
    from shared.vision.jpeg_info import jpeg_info

    path = _numbered_video(tmp_path / "numbered.avi", frames=3)
    data = bytearray(open(path, "rb").read())
    assert jpeg_info(_file_frames(path, raw=True)[0]).huffman_tables
    at = data.find(b"\xff\xd8")
    scan = data.find(b"\xff\xda", at)
    while 0 <= (dht := data.find(b"\xff\xc4", at, scan)):
        data[dht + 1] = 0xFE  # the first frame's tables turned into comments (COM): no tables
    stripped = tmp_path / "no-tables.avi"
    stripped.write_bytes(bytes(data))
    source = FileSource(str(stripped), keep_jpeg=True)
    try:
        assert not source.jpeg
        frame = source.read()
        assert frame is not None and frame.jpeg is None and frame.image is not None
    finally:
        source.release()


def test_a_capture_process_imports_no_library_it_does_not_use():
    # One capture per stream: what it imports, every stream pays in memory and start-up. asyncio came
    # with pyzmq's monitor helper (the link's peer counter), 1.5 MB a process.
    heavy = ("asyncio", "tensorflow", "mediapipe", "onnxruntime", "ai_edge_litert", "redis", "PIL", "scipy", "paho")
    code = ("import sys\n"
            "from engagement import cli\n"
            "from shared.ops.service import main_for\n"
            "cli.SERVICE_CLASSES['capture']()\n"
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


class _CountingCapture:
    """A real cv2.VideoCapture that counts its retrieves (the decodes into pixels)."""

    def __init__(self, cap) -> None:
        self.cap, self.retrieves = cap, 0

    def retrieve(self):
        self.retrieves += 1
        return self.cap.retrieve()

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_a_30_fps_file_sampled_at_2_fps_decodes_only_the_frames_it_keeps(tmp_path):
    from services.capture.sources import FileSource

    path = str(tmp_path / "thirty.avi")
    ramp = np.tile(np.arange(320, dtype=np.uint8), (240, 1))
    write_video(path, [np.ascontiguousarray(np.dstack([np.roll(ramp, 7 * i, axis=1), ramp, ramp]))
                       for i in range(75)], 30.0)
    every = []  # the file read whole, as the capture did before
    plain = cv2.VideoCapture(path)
    while (read := plain.read())[0]:
        every.append(read[1])
    plain.release()
    source = FileSource(path)
    source.cap = _CountingCapture(source.cap)
    kept, next_t, period = [], 0.0, 0.5
    while (frame := source.read(wanted_from=next_t)) is not None:
        kept.append(frame)
        while next_t <= frame.t_media + 1e-6:
            next_t += period
    assert [f.index for f in kept] == [0, 15, 30, 45, 60]  # the first frame at or after each half second
    assert [round(f.t_media, 3) for f in kept] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert all(np.array_equal(f.image, every[f.index]) for f in kept)
    assert source.cap.retrieves == 5 and source.corrupt == 0  # 75 before: every frame turned into pixels


def test_a_live_source_grabs_every_frame_and_decodes_only_the_one_due(tmp_path):
    """A stream (FFmpeg, here a file:// URL) read by the capture's live loop: frames not due yet are
    grabbed, keeping the buffer fresh, and not decoded; the due one is decoded and is the frame grabbed."""
    from services.capture.sources import LiveSource

    path = tmp_path / "numbers.avi"
    _numbered_video(path, 12)
    source = LiveSource(f"file://{path}")
    source.cap = _CountingCapture(source.cap)
    holder = SimpleNamespace(_count_moves=lambda source: None)
    try:
        later = time.monotonic() + 60
        skipped = [CaptureService._read_live(holder, source, later) for _ in range(5)]  # type: ignore[arg-type]
        assert skipped == [(False, None)] * 5 and source.cap.retrieves == 0 and source.index == 4
        due, frame = CaptureService._read_live(holder, source, time.monotonic())  # type: ignore[arg-type]
        assert due and frame is not None and frame.index == 5 and source.cap.retrieves == 1
        expected = cv2.VideoCapture(str(path))
        for _ in range(6):
            ok, image = expected.read()
        expected.release()
        assert np.array_equal(frame.image, image)
    finally:
        source.release()
