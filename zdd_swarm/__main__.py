from zdd_swarm.cli import main

main()
