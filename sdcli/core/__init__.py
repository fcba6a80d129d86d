"""Plain values every layer shares: requests, specs, config, signals. Imports only sdcli.errors."""
