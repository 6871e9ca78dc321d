"""What a call is billed in besides tokens, each in its own unit so the usage and the request log
say it plainly: images (at the model's per-image price), seconds of audio (whisper-1) and
characters of input (tts-1, tts-1-hd), the last two at the model's input price, USD per 1M of them;
and the hosted tool uses billed per use (web searches, file searches, code interpreter containers)
with the part of the call's cost they make (`tools_nusd`), so a report can split it out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Units:
    images: int = 0
    audio_seconds: int = 0
    characters: int = 0
    web_searches: int = 0
    file_searches: int = 0
    containers: int = 0
    tools_nusd: int = 0

    def counted(self) -> int:
        """What counts against a tokens-per-minute limit as tokens do (one a second, one a character);
        images and tool uses count nothing there (their prompt's tokens do)."""
        return self.audio_seconds + self.characters


NO_UNITS = Units()
