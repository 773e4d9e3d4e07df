"""WebVTT subtitles of a timeline: one cue per segment, so any video player
shows the action as a subtitle (`<video>` with a `<track>`, VLC, mpv).

Cues are written as segments close (the file is valid after every cue:
a player reading it while it grows shows what is known). Times are
`HH:MM:SS.mmm`; text is escaped as WebVTT asks (`&`, `<`, `>`).

>>> import io
>>> out = io.StringIO()
>>> writer = WebVTTWriter(out)
>>> writer.cue(1.5, 3.25, "cartwheel 0.83")
>>> print(out.getvalue())
WEBVTT
<BLANKLINE>
1
00:00:01.500 --> 00:00:03.250
cartwheel 0.83
<BLANKLINE>
"""


def timestamp(seconds):
    """`HH:MM:SS.mmm` (hours may exceed 99)."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def escape(text):
    """Cue text: one line, `&`, `<` and `>` escaped."""
    text = " ".join(str(text).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class WebVTTWriter:
    """Writes `WEBVTT` and then numbered cues to a text stream, flushed."""

    def __init__(self, stream):
        self.stream, self.count = stream, 0
        stream.write("WEBVTT\n\n")
        stream.flush()

    def cue(self, start, end, text):
        if end <= start:  # a player drops empty cues; keep at least 1 ms
            end = start + 0.001
        self.count += 1
        self.stream.write(f"{self.count}\n{timestamp(start)} --> {timestamp(end)}\n")
        self.stream.write(f"{escape(text)}\n\n")
        self.stream.flush()

    def segment(self, segment):
        """A `serving.timeline.Segment` as a cue: `label probability`."""
        self.cue(segment.start, segment.end, f"{segment.label} {segment.probability:.2f}")


__all__ = ["WebVTTWriter", "escape", "timestamp"]
