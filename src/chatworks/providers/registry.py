"""Picks the provider named in the settings."""

from __future__ import annotations

from chatworks.providers.base import Provider
from chatworks.settings import Settings


def create_provider(settings: Settings) -> Provider:
    if settings.provider == "openai":
        from chatworks.providers.openai import OpenAIProvider

        return OpenAIProvider(settings)
    if settings.provider == "transformers":
        from chatworks.providers.transformers import TransformersProvider

        return TransformersProvider(settings)
    if settings.provider == "scripted":
        from chatworks.providers.scripted import ScriptedProvider

        return ScriptedProvider(settings)
    from chatworks.providers.native import NativeProvider

    return NativeProvider(settings)
