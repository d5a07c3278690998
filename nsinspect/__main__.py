from nsinspect.cli import main

main()
