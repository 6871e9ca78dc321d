"""What a media call is billed in besides tokens, each in its own unit so the usage and the request
log say it plainly: images (at the model's per-image price), seconds of audio (whisper-1) and
characters of input (tts-1, tts-1-hd), the last two at the model's input price, USD per 1M of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Units:
    images: int = 0
    audio_seconds: int = 0
    characters: int = 0

    def counted(self) -> int:
        """What counts against a tokens-per-minute limit as tokens do (one a second, one a character);
        images count nothing there (their prompt's tokens do)."""
        return self.audio_seconds + self.characters


NO_UNITS = Units()
