"""Providers: one interface (`base.Provider`) over every way chatworks can generate text."""
