"""A person's inputs through a run or artifact: prediction, the HTTP server, its routes and page."""
