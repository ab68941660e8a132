from netbus.cli import main

main()
