"""What the DAMSM and GAN trainers share: run folders, seeding, devices, checkpoint IO, logging, signals."""
