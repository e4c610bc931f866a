from stereosr.cli import main

raise SystemExit(main())
