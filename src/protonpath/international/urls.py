app_name = "international"
urlpatterns = []
