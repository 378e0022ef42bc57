"""The chat UI: static files (HTML, CSS, vanilla JS modules) served by the API at / and /static."""
