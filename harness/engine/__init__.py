"""Docker engine bootstrap, compose CLI portability and offline image builds."""
