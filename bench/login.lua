-- wrk script: POST /api/v1/auth/login with the benchmark user's credentials.
-- Credentials come from the environment (BENCH_USER, BENCH_PASSWORD), set by auth_bench.sh.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"username":"%s","password":"%s"}',
  os.getenv("BENCH_USER"), os.getenv("BENCH_PASSWORD"))
