"""Building blocks of coldflow's flows: plain functions and the thin Prefect tasks over them."""
