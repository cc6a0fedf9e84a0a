module github.com/movidesk-agi/movidesk-agi

go 1.26.8
