from xmixup.cli import main

raise SystemExit(main())
