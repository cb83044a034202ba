from arkd_bench.cli import main

main()
