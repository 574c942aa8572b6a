"""`fedsnn demo`: a local web app that shows a curious server rebuilding a client's image."""
