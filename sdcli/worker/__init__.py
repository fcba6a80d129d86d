"""`sdcli serve`: the warm worker, its protocol and HTTP APIs, and the client the commands use."""
