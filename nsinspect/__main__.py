from nsinspect.entry import main

main()
