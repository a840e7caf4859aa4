"""coldflow's Prefect flows, one module per job."""
