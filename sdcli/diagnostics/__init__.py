"""What `sdcli info` reports and checks: the environment, the smoke check, tiny pipelines."""
